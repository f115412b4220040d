r"""Multiplying by weights in their blocks, without expanding them to float32 first.

A decode step reads every weight once for one multiply-add, so it is as fast as
the bytes it reads: 4-bit codes are a seventh of float32's. PyTorch has a CPU
kernel for 4-bit weights in groups of 32, each group with a scale and a zero:

    w = (q - 8) * scale + zero          (torch.ops.aten._weight_int4pack_mm_for_cpu)

Q4_1's w = d * q + m is that with scale = d and zero = m + 8d; Q4_0's
w = d * (q - 8) with zero = 0; Q3_1 and Q2_1 (codes below 8 and 4) are Q4_1's
case too. The kernel wants its codes packed in a layout of its own, which
depends on the CPU's instruction set, so they are packed here, at load.

On x86 the kernel is fast only with bfloat16 activations, scales and zeros
(its float32 path is a plain loop, about 14 times slower). bfloat16 keeps 8
significant bits where float16 keeps 11: scale and zero move by at most 1 part
in 512, and so does each activation; the products still add up in float32.

Q8_0 (the embedding, which is also the output head) has 8-bit codes with a
scale per block; PyTorch's int8 kernel takes one scale per row, and one call
per block column (18 for SmolLM2) costs more than the table is worth. So
`Q8Table` splits each code exactly in two 4-bit halves and runs both through
the int4 kernel: with u = q + 128 = 16 hi + lo,

    d q = (hi - 8) 16d  +  (lo - 8) d + 8d

(scale 16d, zero 0; scale d, zero 8d): nothing is requantized. A lookup
(the embedding) reads the codes as stored, exactly.

Notation: T rows of activations, N output features, K input features, K / 32 blocks a row.
"""

from __future__ import annotations

import functools

import torch

from .blocks import BLOCK, FORMATS, Quantized

GROUP = BLOCK                       # the int4 kernel's group size: one group is one block
ACTIVATIONS = torch.bfloat16


@functools.cache
def int4_unavailable() -> str | None:
    """None if this machine runs the int4 kernel in bfloat16 (checked on a small product), else why not."""
    try:
        codes = torch.arange(2 * GROUP * 64, dtype=torch.int32).remainder(16).view(64, 2 * GROUP)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        scales_and_zeros = torch.ones(2, 64, 2, dtype=ACTIVATIONS)
        x = torch.ones(1, 2 * GROUP, dtype=ACTIVATIONS)
        got = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, GROUP, scales_and_zeros)
        expected = (codes.float() - 8 + 1).sum(1)                          # (q - 8) * 1 + 1, summed
        if not torch.equal(got.float()[0], expected):
            return "PyTorch's int4 kernel gives wrong numbers on this machine"
    except (RuntimeError, AttributeError, NotImplementedError) as error:
        return f"this PyTorch has no CPU int4/bfloat16 kernel ({str(error).splitlines()[0][:80]})"
    return None


class Int4Matrix:
    """One or more 4-bit block matrices side by side (a layer's q, k and v, say), packed for the int4
    kernel: x @ W.T for rows x. The packed codes take K / 2 bytes a row, scales and zeros 4 bytes a block."""

    def __init__(self, parts: list[Quantized], activations: torch.dtype = ACTIVATIONS):
        for part in parts:
            if part.format.bits > 4 or part.format.name == "Q8_0":
                raise ValueError(f"the int4 kernel runs formats of at most 4 bits, not {part.format.name}.")
        codes = torch.cat([p.codes for p in parts])                                          # (N, K)
        scale = torch.cat([p.scale for p in parts]).float()                                  # (N, K/32)
        zero = torch.cat([(p.minimum.float() + 8 * p.scale.float()) if p.format.with_minimum
                          else torch.zeros_like(p.scale, dtype=torch.float32) for p in parts])
        self._pack(codes, scale, zero, activations)

    def _pack(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, activations: torch.dtype) -> None:
        """codes (N, K) in 0..15, scale and zero (N, K/32): w = (code - 8) * scale + zero."""
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)    # (N, K/2) uint8
        # (K/32, N, 2): the kernel reads this layout, contiguous
        self._take(packed, torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(activations))

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                   activations: torch.dtype = ACTIVATIONS) -> "Int4Matrix":
        """Codes in 0..15 with a scale and a zero per block of 32: w = (code - 8) * scale + zero."""
        matrix = cls.__new__(cls)
        matrix._pack(codes, scale, zero, activations)
        return matrix

    def _take(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor) -> None:
        self.packed, self.scales_and_zeros, self.activations = packed, scales_and_zeros, scales_and_zeros.dtype
        self.out_features, self.in_features = packed.size(0), 2 * packed.size(1)

    @classmethod
    def from_packed(cls, packed: torch.Tensor, scales_and_zeros: torch.Tensor) -> "Int4Matrix":
        """One packed before, on this machine (minitx's cache keeps them)."""
        matrix = cls.__new__(cls)
        matrix._take(packed, scales_and_zeros)
        return matrix

    @property
    def nbytes(self) -> int:
        return self.packed.numel() + self.scales_and_zeros.numel() * self.scales_and_zeros.element_size()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(T, K) -> (T, N), in the activations' dtype (bfloat16: adding it to a float32 stream gives float32)."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(self.activations), self.packed, GROUP,
                                                          self.scales_and_zeros)


class Q8Table:
    """A Q8_0 table used both ways, as the embedding and the tied output head (see the module docstring):
    rows looked up exactly from the codes as stored, products through the int4 kernel in two halves."""

    def __init__(self, q: Quantized, activations: torch.dtype = ACTIVATIONS):
        if q.format.name != "Q8_0":
            raise ValueError(f"Q8Table holds Q8_0, not {q.format.name}.")
        u = q.codes.to(torch.int32) + 128                                                    # (N, K) in 1..255
        d = q.scale.float()                                                                  # (N, K/32)
        high = Int4Matrix.from_codes(u >> 4, 16 * d, torch.zeros_like(d), activations)
        low = Int4Matrix.from_codes(u & 15, d, 8 * d, activations)
        self._take(q.codes, q.scale, high, low)

    def _take(self, codes: torch.Tensor, scale: torch.Tensor, high: Int4Matrix, low: Int4Matrix) -> None:
        self.codes, self.scale, self.high, self.low = codes, scale, high, low               # (N, K) int8, (N, K/32)
        self.out_features, self.in_features = codes.shape

    @classmethod
    def from_parts(cls, codes: torch.Tensor, scale: torch.Tensor, high: Int4Matrix, low: Int4Matrix) -> "Q8Table":
        """Built before (minitx's cache keeps the codes, the scales and both packed halves)."""
        table = cls.__new__(cls)
        table._take(codes, scale, high, low)
        return table

    @property
    def quantized(self) -> Quantized:
        return Quantized(FORMATS["Q8_0"], self.codes, self.scale, None)

    @property
    def nbytes(self) -> int:
        """Bytes a product reads: both packed halves with their scales and zeros."""
        return self.high.nbytes + self.low.nbytes

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Float32 rows, exactly as stored: an embedding lookup.  (n,) -> (n, K)"""
        codes = self.codes[index].float().view(index.numel(), -1, BLOCK)                     # (n, K/32, 32)
        return (codes * self.scale[index].float()[..., None]).view(index.numel(), self.in_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(T, K) -> (T, N) float32."""
        return self.high(x).float() + self.low(x)
