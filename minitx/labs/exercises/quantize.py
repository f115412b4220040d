"""The lab of the quantization page: Q4_1, one block of 32 weights at a time, as a GGUF file stores it."""

from __future__ import annotations

import torch

from ...quant.blocks import quantize
from .. import pictures
from ..lab import Case, Lab, Mistake, Output
from .common import header, randn

STUB = header("quantize_block", "Q4_1 quantization of blocks of 32 weights") + '''
import torch
from torch import Tensor


def quantize_block(w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Q4_1, as llama.cpp writes it, for N blocks of 32 weights each.

    w  (N, 32) float32
    For each block: d = (max - min) / 15 and m = min, both kept as float16; the codes
    q = trunc((w - min) * (1 / d) + 0.5), clamped to 0..15 (and 0 where d is 0: all weights equal),
    computed with the float32 d, as ggml does; the 32 codes packed in 16 bytes, byte j holding
    code j in its low 4 bits and code j + 16 in its high 4 bits.
    returns d (N,) float16, m (N,) float16, the packed codes (N, 16) uint8, and the weights the
    block stands for, d * q + m with the float16 d and m, (N, 32) float32
    """
    raise NotImplementedError
'''


def quantize_block(w: torch.Tensor):
    """minitx's answer: minitx.quant.blocks.quantize, then the 32 codes packed as a GGUF file packs them."""
    q = quantize(w, "Q4_1")                                              # codes (N, 32), d and m (N, 1)
    packed = q.codes[:, :16] | (q.codes[:, 16:] << 4)                   # (N, 16): j low, j + 16 high
    return q.scale[:, 0], q.minimum[:, 0], packed, q.dequantize()


def _wrong(w, levels=15, rounding="half up", minimum=True, pack="split", half_scales=True, subtract=True,
           rebuild_minimum=True, swap_ends=False, scale_type=torch.float16, code_type=torch.uint8):
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    if swap_ends:
        low, high = high, low
    m = low if minimum else torch.zeros_like(low)
    d = ((high - low) if minimum else high) / levels
    scaled = ((w - m) if subtract else w) * torch.where(d == 0, 0.0, 1 / d)
    q = {"half up": torch.trunc(scaled + 0.5), "down": torch.trunc(scaled), "even": torch.round(scaled)}[rounding]
    q = q.clamp(0, 15).to(code_type)
    packed = {"split": q[:, :16] | (q[:, 16:] << 4), "swapped": (q[:, :16] << 4) | q[:, 16:],
              "neighbours": q[:, 0::2] | (q[:, 1::2] << 4), "byte apart": q[:, :16] | (q[:, 16:] << 8)}[pack]
    d16, m16 = d[:, 0].half(), m[:, 0].half()
    scale, shift = (d16.float(), m16.float()) if half_scales else (d[:, 0], m[:, 0])
    weights = q.float() * scale[:, None] + (shift[:, None] if rebuild_minimum else 0.0)
    return d16.to(scale_type), m16.to(scale_type), packed, weights


def cases() -> list[Case]:
    def case(label, w):
        return Case(label, {"w": w}, {"N": w.size(0)})

    steps = torch.arange(15, dtype=torch.float32) + 0.5                  # min 0, max 15: d = 1, so each of
    halves = torch.cat([torch.tensor([0.0, 15.0]), steps, steps])[None] * torch.tensor([[1.0], [0.25]])  # these is x.5
    outlier = randn(1, 32, seed=3, scale=0.01)
    outlier[0, 7] = 40.0
    return [
        case("4 random blocks", randn(4, 32, seed=0)),
        case("negative weights only", -randn(3, 32, seed=1).abs() - 0.5),
        case("one outlier in small weights", outlier),
        case("all weights equal: d = 0", torch.full((2, 32), 0.75)),
        case("zeros", torch.zeros(1, 32)),
        case("weights on exact halves of a step", halves),
        case("tiny weights: d below float16's normal range", randn(2, 32, seed=4, scale=1e-6)),
    ]


def picture(case: Case, want, got) -> dict:
    return pictures.heatmap("the weights each block stands for, blocks down", want[3], got[3], "block", "weight")


QUANTIZE_BLOCK = Lab(
    name="quantize_block", function="quantize_block", title="Q4_1: a block in 4 bits", page="quantization",
    task="A 4-bit GGUF file keeps each block of 32 weights as a float16 scale d, a float16 minimum m and 32 "
         "codes from 0 to 15: w ≈ d × q + m, 5 bits a weight. Write the quantizer llama.cpp uses, bit for bit.",
    stub=STUB, reference=quantize_block, cases=cases,
    outputs=(Output("d", "(N,)", dtype=torch.float16), Output("m", "(N,)", dtype=torch.float16),
             Output("the packed codes", "(N, 16)", dtype=torch.uint8), Output("the weights", "(N, 32)")),
    answer=(quantize_block, quantize),
    mistakes=(
        Mistake("The scale comes from the maximum alone (d = max / 15, no minimum): Q4_1 spreads its 16 codes from "
                "the block's minimum to its maximum, d = (max - min) / 15 and m = min.",
                lambda w: _wrong(w, minimum=False), ("amax", "max")),
        Mistake("16 steps where there are 15: codes 0..15 make 15 steps from the minimum to the maximum, so "
                "d = (max - min) / 15.", lambda w: _wrong(w, levels=16), ("/",)),
        Mistake("The codes are rounded down: ggml adds 0.5 before truncating, so each weight takes its nearest code.",
                lambda w: _wrong(w, rounding="down"), ("trunc", "floor")),
        Mistake("Halves are rounded to the even code (torch.round): ggml takes trunc(x + 0.5), so a weight exactly "
                "between two codes takes the upper one.", lambda w: _wrong(w, rounding="even"), ("round",)),
        Mistake("The nibbles are swapped: code j goes in the low 4 bits of byte j, code j + 16 in the high 4 bits.",
                lambda w: _wrong(w, pack="swapped"), ("<<",)),
        Mistake("Neighbouring codes share a byte (2j and 2j + 1): GGUF pairs code j with code j + 16.",
                lambda w: _wrong(w, pack="neighbours"), ("<<",)),
        Mistake("The weights are rebuilt from the float32 d and m: the file keeps them in float16, so rebuild "
                "from d.half() and m.half(), as the reader will.", lambda w: _wrong(w, half_scales=False)),
        Mistake("The codes were taken from w itself, not from w - min: a code counts steps of d up from the "
                "block's minimum, q = trunc((w - min) / d + 0.5).", lambda w: _wrong(w, subtract=False),
                ("trunc", "round")),
        Mistake("The weights were rebuilt without the minimum: w ≈ d × q + m.",
                lambda w: _wrong(w, rebuild_minimum=False), ("*",)),
        Mistake("The minimum and maximum are swapped: d = (max - min) / 15 is positive and m is the minimum.",
                lambda w: _wrong(w, swap_ends=True), ("amin", "min")),
        Mistake("d and m stayed float32: the file keeps each as float16 (`.half()`), 2 bytes each.",
                lambda w: _wrong(w, scale_type=torch.float32), ("half",)),
        Mistake("The packed codes are int64: a byte is uint8, `q.to(torch.uint8)` before packing.",
                lambda w: _wrong(w, code_type=torch.int64), ("to", "long")),
        Mistake("Code j + 16 was shifted by 8 bits, out of its byte: a byte holds two 4-bit codes, so the high "
                "one is shifted by 4, `q[:, 16:] << 4`.", lambda w: _wrong(w, pack="byte apart"), ("<<",)),
    ),
    rtol=0.0, atol=0.0, picture=picture,
    hints=(
        "`low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)`; `d = (high - low) / 15`.",
        "`inverse = torch.where(d == 0, 0.0, 1 / d)`; `q = torch.trunc((w - low) * inverse + 0.5).clamp(0, 15)`.",
        "`packed = q[:, :16] | (q[:, 16:] << 4)` on uint8 codes; the weights: `q * d.half().float() + low.half().float()`.",
    ),
)
