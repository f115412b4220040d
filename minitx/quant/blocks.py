r"""Weights as GGUF stores them: blocks of 32 numbers, each block a few bits per number and a scale.

A row of a weight matrix is cut into blocks of 32. Each block keeps one or two
float16 numbers and 32 small integers (codes) that stand for its weights:

    Q8_0   d, 32 codes in -127..127     w = d * q            d = max |w| / 127          8.5 bits per weight
    Q4_0   d, 32 codes in 0..15         w = d * (q - 8)      d = (w of largest |w|) / -8    4.5
    Q4_1   d, m, 32 codes in 0..15      w = d * q + m        d = (max - min) / 15, m = min  5.0
    Q3_1   d, m, 32 codes in 0..7       w = d * q + m        d = (max - min) / 7            4.0  (minitx's own)
    Q2_1   d, m, 32 codes in 0..3       w = d * q + m        d = (max - min) / 3            3.0  (minitx's own)

Q8_0, Q4_0 and Q4_1 are llama.cpp's formats: `quantize` writes what ggml's
reference quantizers (and the `gguf` package's `gguf.quants`) write, bit for
bit, so `to_gguf` gives the bytes a GGUF file holds. In those bytes a 4-bit
block keeps d (and m), then 16 bytes: byte j holds code j in its low nibble
and code j + 16 in its high one. Q3_1 and Q2_1 exist only here, to show where
fewer bits stop working; they are kept unpacked.

Notation: N rows, K weights a row (a multiple of 32), K / 32 blocks a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 32


@dataclass(frozen=True)
class BlockFormat:
    """How one block of 32 weights is stored."""

    name: str
    bits: int                 # per code
    with_minimum: bool        # w = d * q + m; without: w = d * (q - offset)
    offset: int               # subtracted from a code before scaling (0 with a minimum, and for Q8_0)
    gguf_type: int | None     # ggml's GGMLQuantizationType number; None for minitx's own formats

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1

    @property
    def bits_per_weight(self) -> float:
        """Codes plus the block's float16 scale (and minimum), per weight."""
        return self.bits + 16 * (1 + self.with_minimum) / BLOCK


FORMATS = {f.name: f for f in (
    BlockFormat("Q8_0", 8, False, 0, 8),
    BlockFormat("Q4_0", 4, False, 8, 2),
    BlockFormat("Q4_1", 4, True, 0, 3),
    BlockFormat("Q3_1", 3, True, 0, None),
    BlockFormat("Q2_1", 2, True, 0, None),
)}
BY_GGUF_TYPE = {f.gguf_type: f for f in FORMATS.values() if f.gguf_type is not None}


@dataclass
class Quantized:
    """A matrix in blocks: codes (N, K) (int8 for Q8_0, else uint8), scale and minimum (N, K / 32) float16."""

    format: BlockFormat
    codes: torch.Tensor
    scale: torch.Tensor
    minimum: torch.Tensor | None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    @property
    def nbytes(self) -> int:
        """Bytes as stored: codes at their width, plus the float16 numbers of every block."""
        rows, cols = self.shape
        return rows * cols * self.format.bits // 8 + self.scale.numel() * 2 * (1 + self.format.with_minimum)

    def dequantize(self) -> torch.Tensor:
        """The float32 weights the blocks stand for, computed as ggml computes them.  -> (N, K)"""
        rows, cols = self.shape
        codes = self.codes.view(rows, cols // BLOCK, BLOCK).float() - self.format.offset  # (N, K/32, 32)
        weights = codes * self.scale.float()[..., None]
        if self.minimum is not None:
            weights = weights + self.minimum.float()[..., None]
        return weights.view(rows, cols)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Some rows' float32 weights (an embedding lookup), without dequantizing the rest.  -> (len(index), K)"""
        picked = Quantized(self.format, self.codes[index], self.scale[index],
                           None if self.minimum is None else self.minimum[index])
        return picked.dequantize()


def check_shape(shape: tuple[int, ...], name: str = "the matrix") -> None:
    if len(shape) != 2 or shape[1] % BLOCK:
        raise ValueError(f"{name} has shape {tuple(shape)}: a block format needs a matrix whose rows are a "
                         f"multiple of {BLOCK} long.")


def quantize(weights: torch.Tensor, format: str | BlockFormat) -> Quantized:
    """A float32 matrix in blocks of `format` (a name in FORMATS). Rounding follows ggml's reference
    quantizers step for step, each step a float32 operation as there, so the codes and scales are theirs."""
    fmt = FORMATS[format] if isinstance(format, str) else format
    check_shape(tuple(weights.shape))
    rows, cols = weights.shape
    w = weights.detach().float().reshape(rows, cols // BLOCK, BLOCK)        # (N, K/32, 32)
    minimum = None
    if fmt.name == "Q8_0":
        d = w.abs().amax(-1, keepdim=True) / 127
        inverse = torch.where(d == 0, 0.0, 1 / d)
        codes = _round_half_away(w * inverse).to(torch.int8)
    elif fmt.name == "Q4_0":
        largest = w.gather(-1, w.abs().argmax(-1, keepdim=True))           # signed: the first of largest |w|
        d = largest / -8
        inverse = torch.where(d == 0, 0.0, 1 / d)
        codes = torch.trunc(w * inverse + 8.5).clamp(0, 15).to(torch.uint8)
    else:                                                                    # d * q + m, m the block's minimum
        low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
        d = (high - low) / fmt.levels
        inverse = torch.where(d == 0, 0.0, 1 / d)
        codes = torch.trunc((w - low) * inverse + 0.5).clamp(0, fmt.levels).to(torch.uint8)
        minimum = low[..., 0].half()
    return Quantized(fmt, codes.view(rows, cols), d[..., 0].half(), minimum)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's roundf: halves away from zero (torch.round takes them to the even neighbour)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def block_bytes(fmt: BlockFormat) -> int:
    """Bytes one block takes in a GGUF file."""
    return 2 * (1 + fmt.with_minimum) + BLOCK * fmt.bits // 8


def to_gguf(q: Quantized) -> np.ndarray:
    """The bytes a GGUF file stores for these blocks: per block d (, m), then the codes.  -> (N, K/32 * bytes a block) uint8"""
    if q.format.gguf_type is None:
        raise ValueError(f"{q.format.name} is minitx's own format; GGUF files hold Q8_0, Q4_0 and Q4_1.")
    rows, cols = q.shape
    blocks = cols // BLOCK
    parts = [q.scale.view(torch.uint8).view(rows, blocks, 2)]                # float16 as its two bytes
    if q.minimum is not None:
        parts.append(q.minimum.view(torch.uint8).view(rows, blocks, 2))
    codes = q.codes.view(torch.uint8).view(rows, blocks, BLOCK)
    if q.format.bits == 4:
        codes = codes[..., :16] | (codes[..., 16:] << 4)                     # j low, j + 16 high
    parts.append(codes)
    return torch.cat(parts, dim=-1).reshape(rows, -1).numpy()


def from_gguf(raw: np.ndarray, gguf_type: int, shape: tuple[int, int], name: str = "a tensor") -> Quantized:
    """The blocks a GGUF file stores (raw bytes, as gguf's reader gives them) for an (N, K) matrix."""
    fmt = BY_GGUF_TYPE.get(gguf_type)
    if fmt is None:
        raise ValueError(f"{name} is stored as GGML type {gguf_type}, which minitx reads only dequantized.")
    check_shape(shape, name)
    rows, cols = shape
    blocks = cols // BLOCK
    size = block_bytes(fmt)
    if raw.size != rows * blocks * size:
        raise ValueError(f"{name} holds {raw.size:,} bytes where a {rows} x {cols} {fmt.name} matrix takes "
                         f"{rows * blocks * size:,}: the file is cut short or damaged.")
    data = torch.from_numpy(np.require(raw, np.uint8, "CW").reshape(rows, blocks, size))   # (N, K/32, bytes)
    scale = data[..., 0:2].contiguous().view(torch.float16)[..., 0]
    minimum = data[..., 2:4].contiguous().view(torch.float16)[..., 0] if fmt.with_minimum else None
    packed = data[..., 2 * (1 + fmt.with_minimum):]
    if fmt.bits == 4:
        codes = torch.cat([packed & 0x0F, packed >> 4], dim=-1)             # (N, K/32, 32)
    else:
        codes = packed.contiguous().view(torch.int8)
    return Quantized(fmt, codes.reshape(rows, cols).contiguous(), scale.contiguous(),
                     None if minimum is None else minimum.contiguous())
