r"""What built this answer: the residual stream split into the parts that were added to make it, and
each part's direct contribution to a token's logit (direct logit attribution).

A pre-norm decoder never rewrites its residual stream; every block only adds to it:

    final residual r = embedding + sum over layers (sum over heads of head output + attention bias
                                                    + feed-forward output)

and one head's output is its share of the output projection: head h's weighted values o_h (T, Dh)
times W_O's columns for that head, o_h W_O[:, h]^T (T, D). The logit of token t is then
final_norm(r) . E_t (the tied head). The final RMSNorm divides by s = sqrt(mean(r^2) + eps); with s
frozen at its value on the real residual, the logit is a sum again, and each part's contribution is

    (part / s) . (norm weight * E_t)                                    (TransformerLens' logit_attrs)

These contributions add up to the model's logit exactly (to float32 rounding). They say how much each
part wrote in the token's direction, not that the part caused it: a head may write what a later block
would have written anyway, and a part's effect through later layers is not counted here.

The recording uses the model's swap points (minitx.swaps): a block function that keeps what each
branch added, and an attention function that keeps each head's weights and values. Nothing is patched.

Notation: L layers, H query heads, T tokens, D model size, Dh head size, V vocabulary.
Reference: Elhage et al. 2021, "A mathematical framework for transformer circuits".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import explicit_attention
from .block import RMSNorm, pre_norm
from .decoder import CausalLM


@dataclass
class LayerRecord:
    """What one block read and added, for one text (the batch's only row)."""

    residual: torch.Tensor = None       # (T, D): the stream entering the block
    attention: torch.Tensor = None      # (T, D): what attention added (every head, and the bias)
    feed_forward: torch.Tensor = None   # (T, D): what the feed-forward network added
    weights: torch.Tensor = None        # (H, T, T): each head's attention weights
    values: torch.Tensor = None         # (H, T, Dh): the values each head read (its key/value group's)


@dataclass
class Recording:
    """One forward pass, taken apart: every layer's record, the final stream and the logits."""

    ids: list[int]
    layers: list[LayerRecord]
    final: torch.Tensor                 # (T, D): the stream after the last block
    logits: torch.Tensor                # (T, V)


def explainable(model: nn.Module) -> str | None:
    """Why attribution cannot take this model apart, in a sentence; None if it can."""
    if not isinstance(model, CausalLM):
        return "attribution takes a language model apart; this is a classifier (an encoder)."
    if model.cfg.norm_position != "pre":
        return ("attribution needs a pre-norm model, whose blocks only add to the residual stream; this one is "
                "post-norm (each block normalises the stream itself).")
    out_proj = model.layers[0].attention.out_proj if model.layers else None
    if not isinstance(getattr(out_proj, "weight", None), torch.Tensor):
        return ("attribution splits the attention output by head through the output projection's float32 "
                "columns; this model keeps them as stored blocks (4-bit): draw the float32 model instead.")
    return None


@torch.inference_mode()
def record(model: CausalLM, ids: list[int]) -> Recording:
    """Run the model once on ids and keep what every block read and added. Uses the functions now at
    the model's swap points (a learner's included), and checks that the parts add up to the stream."""
    problem = explainable(model)
    if problem:
        raise ValueError(problem)
    if not ids:
        raise ValueError("attribution needs a text of at least one token, not an empty one.")
    layers: list[LayerRecord] = []
    attend = model.swaps.get("attention", explicit_attention)
    wire = model.swaps.get("block", pre_norm)

    def recording_attention(q, k, v, mask):                     # q (1, H, T, Dh); k, v (1, H, T, Dh)
        out, weights = attend(q, k, v, mask)
        layers[-1].weights, layers[-1].values = weights[0].float(), v[0].float()
        return out, weights

    def recording_block(x, attention_norm, attention, ffn_norm, feed_forward):
        layer = LayerRecord(residual=x[0].float())
        layers.append(layer)

        def attention_branch(h):
            out = attention(h)
            layer.attention = out[0].float()
            return out

        def feed_forward_branch(h):
            out = feed_forward(h)
            layer.feed_forward = out[0].float()
            return out

        return wire(x, attention_norm, attention_branch, ffn_norm, feed_forward_branch)

    was_training = model.training
    model.eval()
    try:
        with model.using(attention=recording_attention, block=recording_block):
            out = model(torch.tensor([ids], device=next(model.parameters()).device))
    finally:
        model.train(was_training)
    final = out.layer_states[-1][0].float() if out.layer_states else None
    recording = Recording(list(ids), layers, final, out.logits[0].float())
    _check_parts_add_up(recording)
    return recording


def _check_parts_add_up(recording: Recording) -> None:
    """Each block's residual + what it added is the next block's residual (a block function that does not
    add its branches, or skips one, cannot be taken apart)."""
    for index, layer in enumerate(recording.layers):
        if layer.attention is None or layer.feed_forward is None or layer.weights is None:
            raise ValueError(f"layer {index}'s block did not run both branches through attention with weights, "
                             "so its parts cannot be read; attribution needs the pre-norm wiring.")
        after = recording.layers[index + 1].residual if index + 1 < len(recording.layers) else recording.final
        built = layer.residual + layer.attention + layer.feed_forward
        gap = float((built - after).abs().max())
        if gap > 1e-3 * max(1.0, float(after.abs().max())):
            raise ValueError(f"layer {index}'s output is not its input plus its two branches (off by {gap:.3g}): "
                             "the block does not add its branches to the stream, so it cannot be taken apart.")


def head_columns(model: CausalLM, layer: int) -> torch.Tensor:
    """The output projection split by head: head h's output o_h (Dh,) enters the stream as W_O[:, h] o_h.
    -> (D, H, Dh)"""
    attention = model.layers[layer].attention
    return attention.out_proj.weight.detach().float().view(-1, attention.n_heads, attention.head_dim)


def head_outputs(model: CausalLM, recording: Recording, layer: int, position: int) -> torch.Tensor:
    """Every head's output at one position of one layer, through its columns of the output projection.
    -> (H, D); summed over heads, plus the projection's bias, it is what attention added there."""
    record_ = recording.layers[layer]
    per_head = (record_.weights[:, position, None] @ record_.values).squeeze(1)        # (H, Dh)
    return torch.einsum("hk,dhk->hd", per_head, head_columns(model, layer))              # (H, D)


def source_terms(model: CausalLM, recording: Recording, layer: int) -> torch.Tensor:
    """What each head moved from each source position, before weighting: v_j W_O^h for every head h and
    position j; head h adds A_h[i, j] times this row to position i.  -> (H, T, D)"""
    return torch.einsum("hjk,dhk->hjd", recording.layers[layer].values, head_columns(model, layer))   # (H, T, D)


def attention_bias(model: CausalLM, layer: int) -> torch.Tensor | None:
    bias = model.layers[layer].attention.out_proj.bias
    return None if bias is None else bias.detach().float()                                # (D,)


@dataclass
class ReadOut:
    """The final norm as a linear map on the parts of one position's stream: part -> (part - centre) / s * w."""

    scale: float                        # s, frozen at its value on the real residual
    weight: torch.Tensor                # (D,)
    centred: bool                       # LayerNorm subtracts each part's mean; RMSNorm does not
    bias: torch.Tensor | None           # (D,): LayerNorm's bias, a part of its own

    def __call__(self, part: torch.Tensor) -> torch.Tensor:                       # (..., D) -> (..., D)
        if self.centred:
            part = part - part.mean(-1, keepdim=True)
        return part / self.scale * self.weight


def read_out(model: CausalLM, final: torch.Tensor) -> ReadOut:
    """The final norm at one position's final stream (D,), with its scale frozen."""
    norm = model.final_norm
    if isinstance(norm, RMSNorm):
        scale = float((final.pow(2).mean() + norm.eps).sqrt())
        return ReadOut(scale, norm.weight.detach().float(), False, None)
    if isinstance(norm, nn.LayerNorm):
        scale = float((final.var(unbiased=False) + norm.eps).sqrt())
        weight = norm.weight.detach().float() if norm.weight is not None else torch.ones_like(final)
        return ReadOut(scale, weight, True, None if norm.bias is None else norm.bias.detach().float())
    raise ValueError(f"attribution reads the final norm as RMSNorm or LayerNorm, not {type(norm).__name__}.")


@dataclass
class Attribution:
    """Each part's direct contribution to one token's logit (or to the difference of two) at one position."""

    position: int
    target: int
    other: int | None                   # with a second token: contributions to logit(target) - logit(other)
    embedding: float
    heads: torch.Tensor                 # (L, H)
    attention_bias: torch.Tensor        # (L,): zero where the projection has no bias
    feed_forward: torch.Tensor          # (L,)
    norm_bias: float                    # LayerNorm's bias; 0 for RMSNorm
    logit: float                        # the model's own logit (or logit difference), for comparison

    @property
    def total(self) -> float:
        """The sum of the parts: the logit again, to rounding."""
        return (self.embedding + float(self.heads.sum()) + float(self.attention_bias.sum())
                + float(self.feed_forward.sum()) + self.norm_bias)

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The k parts with the largest contributions (by size, either sign): ("L3 H5", 1.2), ("L7 MLP", -0.8)..."""
        parts = [("embedding", self.embedding)]
        parts += [(f"L{layer} H{head}", float(self.heads[layer, head]))
                  for layer in range(self.heads.size(0)) for head in range(self.heads.size(1))]
        parts += [(f"L{layer} MLP", float(value)) for layer, value in enumerate(self.feed_forward)]
        parts += [(f"L{layer} attention bias", float(value)) for layer, value in enumerate(self.attention_bias)
                  if value != 0]
        return sorted(parts, key=lambda part: -abs(part[1]))[:k]


def direction(model: CausalLM, target: int, other: int | None = None) -> torch.Tensor:
    """The unembedding direction of a token (its row of the tied head), or of the difference of two.  -> (D,)"""
    vocab = model.cfg.vocab_size
    for token in (target, other):
        if token is not None and not 0 <= token < vocab:
            raise ValueError(f"token id {token} is outside the vocabulary (0 to {vocab - 1}).")
    rows = model.embedding.weight.detach().float()
    return rows[target] - rows[other] if other is not None else rows[target]


@torch.inference_mode()
def attribute(model: CausalLM, recording: Recording, target: int, position: int = -1,
              other: int | None = None) -> Attribution:
    """Direct logit attribution at one position: each head's, each feed-forward block's and the
    embedding's contribution to the target token's logit (minus the other token's, if given)."""
    T = len(recording.ids)
    if not -T <= position < T:
        raise ValueError(f"position {position} is outside the text's {T} tokens.")
    position %= T
    towards = direction(model, target, other)                                        # (D,)
    norm = read_out(model, recording.final[position])

    def score(part: torch.Tensor) -> torch.Tensor:                                   # (..., D) -> (...)
        return norm(part) @ towards

    heads = torch.stack([score(head_outputs(model, recording, n, position)) for n in range(len(recording.layers))])
    biases = torch.tensor([float(score(bias)) if (bias := attention_bias(model, n)) is not None else 0.0
                           for n in range(len(recording.layers))])
    mlps = torch.stack([score(layer.feed_forward[position]) for layer in recording.layers])
    embedding = float(score(recording.layers[0].residual[position])) if recording.layers else 0.0
    norm_bias = float(norm.bias @ towards) if norm.bias is not None else 0.0
    logits = recording.logits[position]
    logit = float(logits[target] - logits[other]) if other is not None else float(logits[target])
    return Attribution(position, target, other, embedding, heads, biases, mlps, norm_bias, logit)


@torch.inference_mode()
def promoted_tokens(model: CausalLM, recording: Recording, vector: torch.Tensor, position: int,
                    k: int = 5) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """What one part's output (D,) at a position says, read out like the final stream: the k tokens it
    raises most and the k it lowers most, with its contribution to each logit."""
    logits = model.embedding.weight.detach().float() @ read_out(model, recording.final[position])(vector)   # (V,)
    up, down = logits.topk(k), (-logits).topk(k)
    return ([(int(i), float(v)) for v, i in zip(up.values, up.indices)],
            [(int(i), -float(v)) for v, i in zip(down.values, down.indices)])
