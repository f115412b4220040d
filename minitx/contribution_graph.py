r"""The contribution graph: which earlier positions and blocks each residual-stream vector was built from
(the "information flow routes" of Ferrando & Voita 2024, as in llm-transparency-tool).

Every block adds to the residual stream, so each new vector is a sum of parts:

    after attention, at position i:   y = x_i + sum over heads h and sources j of A_h[i, j] (v_j W_O^h)
    after the feed-forward block:     y = x_i + f_i

(a head reads its key/value group's v_j). A part's share of y is how much closer it brings the sum,
by proximity: max(|y|_1 - |y - z|_1, 0), divided by the proximities of all of y's parts. Shares at
each node add up to 1. An edge is drawn where a share is above a threshold; the graph kept is the one
that reaches the chosen position's final vector going back through such edges.

A share is a part of a sum, not a cause: a part with a large share wrote much of the vector, but the
model might have written the same through another route without it.

Notation: L layers, H query heads, T tokens, D model size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attribution import Recording, attention_bias, source_terms
from .decoder import CausalLM

CHUNK_VALUES = 4_000_000        # (queries, H, T, D) computed this many values at a time


def proximity(total: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """How much each part brings the total closer: max(|y|_1 - |y - z|_1, 0) over the last dimension.
    total (..., D), parts (..., N, D) -> (..., N)"""
    return (total.abs().sum(-1, keepdim=True) - (total.unsqueeze(-2) - parts).abs().sum(-1)).clamp_min(0)


@dataclass
class ContributionGraph:
    """Every node's shares: per layer, the attention step's (the stream itself, each (source, head), the
    projection's bias) and the feed-forward step's (the stream itself, the block)."""

    ids: list[int]
    attention_residual: torch.Tensor    # (L, T): the stream's own share of the vector after attention
    heads: torch.Tensor                 # (L, T, T, H): [l, i, j, h], head h moving position j into i
    attention_bias: torch.Tensor        # (L, T): the output projection's bias (0 without one)
    ffn_residual: torch.Tensor          # (L, T): the stream's share of the vector after the block
    ffn: torch.Tensor                   # (L, T): the feed-forward block's share

    @property
    def n_layers(self) -> int:
        return self.heads.size(0)

    def attention_node_totals(self) -> torch.Tensor:
        """Each attention node's shares summed: 1 wherever the vector had any part.  -> (L, T)"""
        return self.attention_residual + self.heads.sum((2, 3)) + self.attention_bias

    def edges(self, position: int = -1, threshold: float = 0.04) -> list["Edge"]:
        """The edges (share >= threshold) that reach the final vector at `position`, going backwards."""
        T = len(self.ids)
        if not -T <= position < T:
            raise ValueError(f"position {position} is outside the text's {T} tokens.")
        if not 0 <= threshold <= 1:
            raise ValueError(f"a threshold is a share between 0 and 1, not {threshold}.")
        position %= T
        kept, seen, frontier = [], set(), [Node("stream", self.n_layers, position)]
        while frontier:
            node = frontier.pop()
            if node in seen:
                continue
            seen.add(node)
            for edge in self._into(node):
                if edge.weight >= threshold:
                    kept.append(edge)
                    frontier.append(edge.source)
        return sorted(kept, key=lambda edge: (edge.target.layer, edge.target.position, -edge.weight))

    def _into(self, node: "Node") -> list["Edge"]:
        """Every edge into a node, with its share."""
        layer, i = node.layer, node.position
        if node.kind == "stream" and layer > 0:        # after block layer - 1: its two parts
            block = layer - 1
            return [Edge(Node("mid", block, i), node, float(self.ffn_residual[block, i]), "residual"),
                    Edge(Node("ffn", block, i), node, float(self.ffn[block, i]), "feed-forward")]
        if node.kind == "ffn":
            return [Edge(Node("mid", layer, i), node, float(self.ffn[layer, i]), "feed-forward")]
        if node.kind == "mid":
            by_source = self.heads[layer, i]                                          # (T, H)
            edges = [Edge(Node("stream", layer, i), node, float(self.attention_residual[layer, i]), "residual")]
            for j in range(i + 1):
                head = int(by_source[j].argmax())
                edges.append(Edge(Node("stream", layer, j), node, float(by_source[j].sum()), "attention", head,
                                  float(by_source[j, head])))
            return edges
        return []                                       # the embedding: where every route starts


@dataclass(frozen=True)
class Node:
    """A vector in the residual stream: "stream" before block `layer` (layer L: after the last one; 0:
    the embedding), "mid" after block `layer`'s attention, "ffn" block `layer`'s feed-forward output."""

    kind: str
    layer: int
    position: int


@dataclass(frozen=True)
class Edge:
    source: Node
    target: Node
    weight: float                       # the source's share of the target
    kind: str                           # "residual", "attention" or "feed-forward"
    head: int | None = None             # for attention: the head with the largest share
    head_weight: float = 0.0            # and its share alone

    def as_dict(self) -> dict:
        return {"from": [self.source.kind, self.source.layer, self.source.position],
                "to": [self.target.kind, self.target.layer, self.target.position],
                "share": round(self.weight, 6), "kind": self.kind,
                **({"head": self.head, "head_share": round(self.head_weight, 6)} if self.head is not None else {})}


@torch.inference_mode()
def contribution_graph(model: CausalLM, recording: Recording) -> ContributionGraph:
    """Every node's shares, layer by layer, from one recorded forward pass. The (query, source, head)
    terms are formed a few query positions at a time (CHUNK_VALUES values), never for the whole text."""
    L, T = len(recording.layers), len(recording.ids)
    H = model.cfg.n_heads
    residual_a, heads, bias_a = torch.zeros(L, T), torch.zeros(L, T, T, H), torch.zeros(L, T)
    residual_f, ffn = torch.zeros(L, T), torch.zeros(L, T)
    for n, layer in enumerate(recording.layers):
        moved = source_terms(model, recording, n)                                   # (H, T, D)
        bias = attention_bias(model, n)
        after = layer.residual + layer.attention                                    # (T, D)
        step = max(1, CHUNK_VALUES // max(1, moved.numel()))
        for start in range(0, T, step):
            rows = slice(start, min(T, start + step))
            weighted = layer.weights[:, rows].permute(1, 0, 2).unsqueeze(-1) * moved  # (t, H, T, D)
            terms = weighted.flatten(1, 2)                                          # (t, H*T, D)
            own = layer.residual[rows].unsqueeze(1)                                 # (t, 1, D)
            parts = [own, terms] + ([bias.expand(own.size(0), 1, -1)] if bias is not None else [])
            close = proximity(after[rows], torch.cat(parts, 1))                     # (t, 1 + H*T [+ 1])
            shares = close / close.sum(-1, keepdim=True).clamp_min(1e-30)
            residual_a[n, rows] = shares[:, 0]
            heads[n, rows] = shares[:, 1:1 + H * T].view(-1, H, T).transpose(1, 2)   # (t, T, H)
            if bias is not None:
                bias_a[n, rows] = shares[:, -1]
        final = layer.residual + layer.attention + layer.feed_forward
        close = proximity(final, torch.stack([after, layer.feed_forward], 1))       # (T, 2)
        shares = close / close.sum(-1, keepdim=True).clamp_min(1e-30)
        residual_f[n], ffn[n] = shares[:, 0], shares[:, 1]
    return ContributionGraph(list(recording.ids), residual_a, heads, bias_a, residual_f, ffn)
