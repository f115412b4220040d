"""Positional encoding: how a model that sees a *set* of vectors learns their order.

Attention itself is blind to order: shuffle the tokens and every output is
shuffled the same way (permutation equivariance). Three fixes live here:

- sinusoidal (Vaswani et al., 2017, "Attention Is All You Need", section 3.5):
  a fixed table added to the embeddings, PE[p, 2i] = sin(p / 10000^(2i/D)),
  PE[p, 2i+1] = cos(p / 10000^(2i/D));
- learned: a trainable table of the same shape, added the same way;
- rotary, RoPE (Su et al., 2021, "RoFormer"): nothing is added; instead each
  pair of dimensions of a query or key at position m is rotated by the angle
  m * theta_i, so that q_m . k_n depends only on the offset m - n.

Notation: B batch, T tokens, H heads, Dh head size, D model size.
"""

from __future__ import annotations

import torch
from torch import nn

from .swaps import SwapPoints


def sinusoidal_table(max_len: int, d_model: int, base: float = 10_000.0) -> torch.Tensor:
    """The fixed sine/cosine table: row p is the code for position p.  # (max_len, D)"""
    if d_model % 2:
        raise ValueError(f"the sinusoidal table needs an even d_model, not {d_model}.")
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)        # (max_len, 1)
    pair = torch.arange(0, d_model, 2, dtype=torch.float32)                    # (D/2,) = 2i
    frequency = base ** (-pair / d_model)                                      # (D/2,)
    angle = position * frequency                                               # (max_len, D/2)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed table to the embeddings; it is a buffer, never trained (a function swapped in
    at swap point "sinusoidal", minitx.swaps, makes the table instead)."""

    def __init__(self, max_len: int, d_model: int, swaps: SwapPoints | None = None):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.swaps = swaps if swaps is not None else SwapPoints()

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:  # x: (B, T, D)
        make = self.swaps.get("sinusoidal")
        table = self.table if make is None else make(*self.table.shape).to(self.table)          # (max_len, D)
        return x + table[start: start + x.size(1)]


class LearnedPositionalEncoding(nn.Module):
    """Adds a trainable vector per position: simple, but knows no position beyond max_len."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:  # x: (B, T, D)
        return x + self.table.weight[start: start + x.size(1)]


def rope_angles(seq_len: int, head_dim: int, base: float = 10_000.0,
                device: torch.device | None = None, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle m * theta_i for positions m = start ... start + T - 1
    and every pair i. Returns two tensors of shape (T, Dh/2)."""
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions, so head_dim must be even, not {head_dim}.")
    pair = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)   # (Dh/2,)
    theta = 1.0 / base ** (pair / head_dim)    # (Dh/2,); written as Llama's code does, to its last bit
    position = torch.arange(start, start + seq_len, dtype=torch.float32, device=device)   # (T,)
    angle = torch.outer(position, theta)                                       # (T, Dh/2)
    return angle.cos(), angle.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of every vector by its position's angle.

    x is (B, heads, T, Dh); cos and sin are (T, Dh/2). A rotation keeps every
    vector's length, and rotating q by m*theta and k by n*theta leaves
    q . k depending on (m - n)*theta only.
    """
    # at least float32 (half precision would round the angles), never less than x has
    pairs = x.to(torch.promote_types(x.dtype, torch.float32)).unflatten(-1, (-1, 2))  # (B, heads, T, Dh/2, 2)
    first, second = pairs[..., 0], pairs[..., 1]         # (B, heads, T, Dh/2) each
    rotated = torch.stack(
        (first * cos - second * sin,
         first * sin + second * cos), dim=-1)            # (B, heads, T, Dh/2, 2)
    return rotated.flatten(-2).type_as(x)                # (B, heads, T, Dh)


def rope(x: torch.Tensor, start: int = 0, base: float = 10_000.0) -> torch.Tensor:
    """x (B, heads, T, Dh) rotated as the tokens at positions start, start + 1, ... are.

    With a KV cache a step's tokens do not start at 0: each is rotated by its own absolute
    position, so that it meets the keys already in the cache at the right distance. A larger
    base turns the slow pairs more slowly still, for longer contexts (SmolLM2: 100,000).
    """
    cos, sin = rope_angles(x.size(-2), x.size(-1), base, device=x.device, start=start)   # (T, Dh/2)
    return apply_rope(x, cos, sin)                                                 # (B, heads, T, Dh)
