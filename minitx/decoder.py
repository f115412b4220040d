r"""The decoder: a GPT-style causal language model, and the KV cache that makes generating cheap.

    ids (B, T)
     -> embedding * sqrt(D) (+ positional code)    (B, T, D)
     -> N x TransformerBlock, causal               (B, T, D)   each token sees itself and earlier ones
     -> final norm (pre-norm stacks)               (B, T, D)
     -> @ embedding^T                              (B, T, V)   next-token logits; the head is the
                                                               embedding table itself (tied)

The block is the encoder's, with a causal mask: position t's output depends on
tokens 0..t only, so one forward pass of a T-token text trains T next-token
predictions at once. Tying the output head to the embedding saves V x D
parameters and makes "which token comes next" and "what a token means" one table.

KV cache. Generating token t+1 needs the keys and values of tokens 0..t in every
layer; they never change once computed (the mask keeps later tokens out). The
cache keeps them, per layer K and V of shape (B, G, T, Dh): G key/value heads,
not H, so GQA and MQA shrink it by H / G. Each step writes the new token's K and
V at its absolute position (RoPE rotates it by that position) and attends over
everything so far. Size: 2 x layers x B x G x T x Dh x bytes per value.

Notation: B batch, T tokens, D model size, V vocabulary, H query heads,
G key/value heads, Dh head size. References: Radford et al. 2018/2019 (GPT);
Press & Wolf 2017 (tied embeddings); Pope et al. 2022 (KV cache at scale);
Ainslie et al. 2023 (GQA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .block import TransformerBlock, embed_ids, init_embedding, make_embedding, make_norm, make_positional
from .config import ModelConfig
from .dropout import Dropout
from .swaps import SwapPoints


class LayerCache:
    """One layer's keys and values, with room for `length` positions: (B, G, length, Dh) each."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions' k and v (B, G, T, Dh) at start; return every position so far."""
        end = start + k.size(2)
        if end > self.keys.size(2):
            raise ValueError(f"the cache holds {self.keys.size(2)} positions, not {end}.")
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]          # (B, G, end, Dh) each


class KVCache:
    """Keys and values of every layer, for `length` positions of `batch` sequences."""

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, length: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (batch, n_kv_heads, length, head_dim)                   # (B, G, T, Dh)
        self.layers = [LayerCache(torch.zeros(shape, device=device, dtype=dtype),
                                  torch.zeros(shape, device=device, dtype=dtype)) for _ in range(n_layers)]

    @classmethod
    def for_model(cls, model: "CausalLM", batch: int, length: int) -> "KVCache":
        cfg, weight = model.cfg, next(model.parameters())
        return cls(cfg.n_layers, batch, cfg.n_kv_heads, length, cfg.head_dim, weight.device, weight.dtype)

    @property
    def nbytes(self) -> int:
        """The cache's size, read from its tensors."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in (layer.keys, layer.values))


@dataclass
class LMOutput:
    """One forward pass of the language model, with what the pages show."""

    logits: torch.Tensor                  # (B, T, V): scores for the token after each position
    layer_states: list[torch.Tensor]      # n_layers x (B, T, D), the residual stream
    attentions: list                      # n_layers x (B, H, T, T), with need_weights


class CausalLM(nn.Module):
    """Embedding -> N causal blocks -> tied output head. See the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.swaps = SwapPoints()             # the functions every layer looks up by name (minitx.swaps)
        self.embedding = make_embedding(cfg.vocab_size, cfg.d_model)
        self.embed_scale = init_embedding(self.embedding, scale=cfg.scale_embeddings)
        self.positional = make_positional(cfg, self.swaps)
        self.embedding_dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerBlock(cfg, self.swaps) for _ in range(cfg.n_layers))
        self.final_norm = make_norm(cfg, self.swaps) if cfg.norm_position == "pre" else nn.Identity()

    def using(self, **functions):
        """`with model.using(attention=fn): ...`: fn at that swap point inside the block (minitx.swaps)."""
        return self.swaps.using(**functions)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, start: int = 0,
                need_weights: bool = False, last_only: bool = False) -> LMOutput:
        """ids (B, T) are the tokens at positions start, start + 1, ...; with a cache, the
        keys and values of the positions before start come from it. last_only: logits for the
        last position alone, (B, 1, V), all that generating needs (a V x D product per position saved)."""
        x = embed_ids(ids, self.embedding, self.embed_scale, self.positional, self.cfg.max_len, start)
        x = self.embedding_dropout(x)                                              # (B, T, D)
        states, attentions = [], []
        for index, layer in enumerate(self.layers):
            x, weights = layer(x, causal=True, cache=cache.layers[index] if cache is not None else None,
                               start=start, need_weights=need_weights)
            states.append(x)
            attentions.append(weights)
        if last_only:
            x = x[:, -1:]
        logits = self.head(self.final_norm(x))                                     # (B, T, V)
        return LMOutput(logits, states, attentions)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The tied output head: each token's score is its embedding row's dot product with x.  (..., D) -> (..., V)"""
        return x @ self.embedding.weight.T
