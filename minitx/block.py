"""One transformer block, the unit both the encoder and the decoder stack N times.

    pre-norm (most models since 2019):   x = x + attention(norm(x));  x = x + feed_forward(norm(x))
    post-norm (the 2017 paper):          x = norm(x + attention(x));  x = norm(x + feed_forward(x))

Every token looks at the others (attention), then thinks alone (the
feed-forward network, dense or a mixture of experts). The encoder lets every
token see every other; the decoder is the same block with a causal mask, so a
token sees only itself and the tokens before it, and, when generating, a KV
cache that keeps the keys and values of earlier tokens.

Notation: B batch, T tokens, D model size, H query heads.
References: Vaswani et al. 2017; Xiong et al. 2020 (pre- vs post-norm);
Zhang & Sennrich 2019 (RMSNorm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import GroupedQueryAttention
from .config import ModelConfig
from .dropout import Dropout
from .feedforward import FeedForward
from .moe import MixtureOfExperts
from .positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding
from .swaps import SwapPoints


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight, over the last dimension.  # (..., D) -> (..., D)

    eps inside the root keeps a vector of zeros at zero instead of 0 / 0. Computed in float32
    (a square of half-precision values overflows), returned in x's type.
    """
    rms = x.float().pow(2).mean(-1, keepdim=True).add(eps).rsqrt()     # (..., 1): 1 / RMS
    return (x.float() * rms).type_as(x) * weight


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain; no mean, no bias.

    Cheaper than LayerNorm and, in practice, just as good.
    """

    def __init__(self, d_model: int, eps: float = 1e-6, swaps: SwapPoints | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.swaps = swaps if swaps is not None else SwapPoints()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        return self.swaps.get("rms_norm", rms_norm)(x, self.weight, self.eps)


def make_norm(cfg: ModelConfig, swaps: SwapPoints | None = None) -> nn.Module:
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model, cfg.rms_norm_eps, swaps)


def make_positional(cfg: ModelConfig, swaps: SwapPoints | None = None) -> nn.Module | None:
    """The table added to the embeddings, or None: RoPE works inside attention, and "none"
    leaves the model blind to order."""
    if cfg.pos_encoding == "sinusoidal":
        return SinusoidalPositionalEncoding(cfg.max_len, cfg.d_model, swaps)
    if cfg.pos_encoding == "learned":
        return LearnedPositionalEncoding(cfg.max_len, cfg.d_model)
    return None


def make_embedding(vocab_size: int, d_model: int) -> nn.Embedding:
    """nn.Embedding(vocab_size, d_model); under torch.device("meta") (a loader's empty model) without its
    random start: drawing on meta draws nothing, yet pulls in much of torch to do it."""
    if torch.empty(()).is_meta:
        return nn.Embedding(vocab_size, d_model, _weight=torch.empty(vocab_size, d_model))
    return nn.Embedding(vocab_size, d_model)


def init_embedding(embedding: nn.Embedding, pad_id: int | None = None, scale: bool = True) -> float:
    """N(0, 1/D) entries, to be scaled by sqrt(D): unit-size token vectors, the size of the
    positional table. Returns the scale (1 with scale=False: a pretrained Llama-family table
    comes in the size it was trained at)."""
    d_model = embedding.embedding_dim
    if embedding.weight.is_meta:    # weights still to come (a loader's empty model): nothing to draw
        return math.sqrt(d_model) if scale else 1.0
    nn.init.normal_(embedding.weight, std=d_model ** -0.5)
    if pad_id is not None:
        with torch.no_grad():
            embedding.weight[pad_id].zero_()
    return math.sqrt(d_model) if scale else 1.0


def embed_ids(ids: torch.Tensor, embedding: nn.Embedding, scale: float, positional: nn.Module | None,
              max_len: int, start: int = 0) -> torch.Tensor:
    """Token vectors times sqrt(D), plus the positional code of positions start, start + 1, ...
    # (B, T) -> (B, T, D)"""
    if start + ids.size(1) > max_len:
        raise ValueError(f"a sequence of {start + ids.size(1)} tokens is longer than max_len {max_len}; "
                         f"truncate it first.")
    x = embedding(ids)
    if scale != 1.0:
        x = x * scale
    return x if positional is None else positional(x, start)


def pre_norm(x: torch.Tensor, attention_norm, attention, ffn_norm, feed_forward) -> torch.Tensor:
    """The pre-norm wiring: each branch reads a normalised copy of the residual stream and adds what
    it finds back to it; the stream itself is never normalised.  # (B, T, D) -> (B, T, D)"""
    x = x + attention(attention_norm(x))
    return x + feed_forward(ffn_norm(x))


class TransformerBlock(nn.Module):
    """Attention, then the feed-forward network, each with a residual connection and a norm."""

    def __init__(self, cfg: ModelConfig, swaps: SwapPoints | None = None):
        super().__init__()
        self.swaps = swaps if swaps is not None else SwapPoints()
        self.pre_norm = cfg.norm_position == "pre"
        self.attention = GroupedQueryAttention(cfg, self.swaps)
        self.attention_norm = make_norm(cfg, self.swaps)
        self.feed_forward = MixtureOfExperts(cfg, self.swaps) if cfg.ffn == "moe" else FeedForward(cfg)
        self.ffn_norm = make_norm(cfg, self.swaps)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None, causal: bool = False,
                cache=None, start: int = 0, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, D) -> (B, T, D), and the attention weights (B, H, T, T) if asked for.
        causal hides later tokens; cache (one layer of a KVCache) keeps keys and values, x
        then being the tokens at positions start, start + 1, ..."""
        weights = None

        def attention(h):
            nonlocal weights
            out, weights = self.attention(h, key_padding_mask=key_padding_mask, causal=causal, cache=cache,
                                          start=start, need_weights=need_weights)
            return self.dropout(out)

        def feed_forward(h):
            return self.dropout(self.feed_forward(h))

        if self.pre_norm:           # the wiring is a swap point: the block lab's function can stand in
            x = self.swaps.get("block", pre_norm)(x, self.attention_norm, attention, self.ffn_norm, feed_forward)
        else:
            x = self.attention_norm(x + attention(x))
            x = self.ffn_norm(x + feed_forward(x))
        return x, weights
