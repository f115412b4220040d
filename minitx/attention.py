r"""Grouped-query attention (Ainslie et al., 2023, "GQA"), from one key/value head to one per query head.

Every token asks a question (query), offers a label (key) and carries a
message (value). A token's output is the average of all messages, weighted by
how well its query matches each key: softmax(Q K^T / sqrt(Dh)) V.

Multi-head attention runs H of these side by side on slices of size Dh. To
save memory, several query heads may share one key/value head:

    MHA (G = H)            GQA (G = 2)            MQA (G = 1)
    q: 0 1 2 3             q: 0 1 2 3             q: 0 1 2 3
       | | | |                \ / \ /                 \ | | /
    kv:0 1 2 3             kv: 0   1              kv:   0

Notation:
    B  batch size              H   query heads (n_heads)
    T  tokens in a sequence    G   key/value heads (n_kv_heads), H % G == 0
    D  model size (d_model)    Dh  head size, D / H

Two paths compute the same numbers: `explicit_attention` writes the formula
out and returns the weights for pictures; `fused_attention` calls
`F.scaled_dot_product_attention`, which is faster and is what training uses.
A test holds them equal. The functions a layer calls by name (attention,
repeat_kv, rope, causal_mask, kv_step) are swap points (`minitx.swaps`): the
labs put a learner's function there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .positional import rope
from .swaps import SwapPoints


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head n_rep times, so G heads serve H = G * n_rep queries.

    The same as `torch.repeat_interleave(x, n_rep, dim=1)`: head g serves
    query heads g*n_rep ... g*n_rep + n_rep - 1.
    """
    if n_rep == 1:
        return x
    B, G, T, Dh = x.shape
    x = x[:, :, None, :, :].expand(B, G, n_rep, T, Dh)   # (B, G, n_rep, T, Dh)
    return x.reshape(B, G * n_rep, T, Dh)                 # (B, H, T, Dh)


def causal_mask(n_queries: int, n_keys: int, device=None) -> torch.Tensor:
    """True where query t may look at key s: at itself and everything before it. Returns (T, S).

    The T queries are the last T of the S positions (S > T when a KV cache holds earlier
    ones), so query t sits at position S - T + t: the diagonal moves right by S - T.
    """
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(n_keys - n_queries)


def attention_mask(key_padding_mask: torch.Tensor | None, seq_len: int,
                   causal: bool = False, device=None, n_keys: int | None = None,
                   make_causal=causal_mask) -> torch.Tensor | None:
    """A boolean mask, True where a query may look at a key. Returns (B or 1, 1, T, S) or None.

    key_padding_mask is (B, S), True on real tokens and False on [PAD]: nobody
    attends to padding. causal=True also hides every later token (make_causal(T, S, device)
    builds that part). The T queries are the last T of the S = n_keys positions (S > T when
    a KV cache holds earlier ones).
    """
    n_keys = n_keys or seq_len
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask[:, None, None, :].bool()                        # (B, 1, 1, S)
        device = key_padding_mask.device
    if causal and seq_len > 1:       # one newest query may look at every key: nothing to hide
        lower = make_causal(seq_len, n_keys, device=device)                    # (T, S)
        mask = lower[None, None] if mask is None else mask & lower              # (B, 1, T, S)
    return mask


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                       training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(Dh)) V, written out. Returns the output and the weights.

    q is (B, H, T, Dh); k and v are (B, G, S, Dh) (S = T without a KV cache); mask is
    True where allowed.
    """
    n_rep = q.size(1) // k.size(1)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)                # (B, H, S, Dh)
    # 1) similarity of every query with every key, scaled so the softmax
    #    does not saturate as Dh grows
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))      # (B, H, T, S)
    # 2) forbidden pairs get -inf, which the softmax turns into weight 0
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # 3) each row becomes a probability distribution over keys (in float32: under bf16
    #    autocast a softmax in bf16 keeps three significant digits)
    weights = scores.float().softmax(dim=-1)                       # (B, H, T, S)
    dropped = F.dropout(weights, dropout_p, training) if dropout_p else weights
    # 4) the output is the weighted average of the values
    return dropped.to(v.dtype) @ v, weights                        # (B, H, T, Dh), (B, H, T, S)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                    is_causal: bool = False) -> torch.Tensor:
    """The same result as `explicit_attention`, from PyTorch's fused kernel; no weights.
    is_causal=True is the causal mask without building it (the kernel skips the hidden half)."""
    n_rep = q.size(1) // k.size(1)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)                # (B, H, S, Dh)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class GroupedQueryAttention(nn.Module):
    """Attention with n_heads query heads sharing n_kv_heads key/value heads. `swaps`: the model's
    swap points (minitx.swaps), a table of its own when the layer stands alone."""

    def __init__(self, cfg: ModelConfig, swaps: SwapPoints | None = None):
        super().__init__()
        self.swaps = swaps if swaps is not None else SwapPoints()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads
        self.head_dim = cfg.head_dim
        self.attention_dropout = cfg.attention_dropout
        self.use_rope = cfg.pos_encoding == "rope"
        self.rope_base = cfg.rope_base
        # K and V are smaller than Q when G < H: that is the whole saving of GQA
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.bias)
        self.out_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.bias)

    def project(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> q (B, H, T, Dh), k and v (B, G, T, Dh), rotated (RoPE) at positions start, ..."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)     # (B, H, T, Dh)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, Dh)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, Dh)
        if self.use_rope:       # each position rotated by its own absolute index
            rotate = self.swaps.get("rope", rope)
            q, k = rotate(q, start, self.rope_base), rotate(k, start, self.rope_base)
        return q, k, v

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """The heads side by side again, then the output projection.  # (B, H, T, Dh) -> (B, T, D)"""
        B, H, T, Dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * Dh))              # (B, T, D)

    def forward(self, x: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None, causal: bool = False,
                cache=None, start: int = 0, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x is (B, T, D); key_padding_mask (B, T) is True on real tokens.

        Returns the output (B, T, D) and, with need_weights=True, the
        attention weights (B, H, T, S) from the explicit path; otherwise the
        fused path runs and the weights are None. With a cache (one layer of a
        minitx.decoder.KVCache), x holds the tokens at positions start, start + 1, ...:
        their keys and values are written into it, and the queries attend to all
        S = start + T positions it then holds.
        """
        swaps, T = self.swaps, x.size(1)
        q, k, v = self.project(x, start)                                                 # (B, H|G, T, Dh)
        kv_step = swaps.get("kv_step")       # a whole one-token step with a cache, or None: the code below
        if kv_step is not None and cache is not None and T == 1 and key_padding_mask is None and not need_weights:
            return self.merge(kv_step(cache.keys, cache.values, k, v, q, start)), None
        if cache is not None:
            k, v = cache.update(k, v, start)                                             # (B, G, S, Dh)
        repeat = swaps.get("repeat_kv", repeat_kv)
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat(k, n_rep), repeat(v, n_rep)                                        # (B, H, S, Dh)
        make_causal = swaps.get("causal_mask", causal_mask)
        dropout_p = self.attention_dropout if self.training else 0.0
        if need_weights or swaps.swapped("attention"):       # the formula written out, with its weights
            mask = attention_mask(key_padding_mask, T, causal, x.device, k.size(2), make_causal)
            out, weights = swaps.get("attention", explicit_attention)(q, k, v, mask)
            if dropout_p:                                     # attention dropout drops weights
                out = F.dropout(weights, dropout_p).to(v.dtype) @ v
        else:       # the same numbers from the fused kernel; a plain causal mask it need not even build
            plain_causal = (causal and T > 1 and key_padding_mask is None and k.size(2) == T
                            and not swaps.swapped("causal_mask"))
            mask = None if plain_causal else attention_mask(key_padding_mask, T, causal, x.device, k.size(2),
                                                             make_causal)
            out, weights = fused_attention(q, k, v, mask, dropout_p, is_causal=plain_causal), None
        return self.merge(out), weights                                                  # (B, T, D)
