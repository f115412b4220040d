"""Labs of the positional-encoding page: the sinusoidal table and rotary embeddings (RoPE)."""

from __future__ import annotations

import math

import torch

from ...positional import apply_rope, rope, rope_angles, sinusoidal_table
from .. import pictures
from ..lab import Case, Lab, Mistake, Output
from .common import header, randn

# -- sinusoidal ----------------------------------------------------------------------------

SINUSOIDAL_STUB = header("sinusoidal", "the sinusoidal positional code") + '''
import math

import torch
from torch import Tensor


def sinusoidal(max_len: int, d_model: int) -> Tensor:
    """The positional code of "Attention Is All You Need": row p is added to the token at position p.

    PE[p, 2i]     = sin(p / 10000^(2i / D))
    PE[p, 2i + 1] = cos(p / 10000^(2i / D))
    returns (max_len, D), float32, for positions 0 ... max_len - 1; d_model is even
    """
    raise NotImplementedError
'''


def _table(max_len, d_model, exponent, layout="interleaved", first_position=0, swap=False):
    position = torch.arange(first_position, first_position + max_len, dtype=torch.float32)[:, None]
    angle = position * 10_000.0 ** (-exponent / d_model)                  # (T, D/2)
    first, second = (angle.cos(), angle.sin()) if swap else (angle.sin(), angle.cos())
    if layout == "halves":
        return torch.cat([first, second], dim=1)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2], table[:, 1::2] = first, second
    return table


def _pairs(d_model):
    return torch.arange(0, d_model, 2, dtype=torch.float32)               # 2i


def _with_frequencies(max_len, d_model, sine, cosine, cosine_also_sine=False):
    """sin(p * sine[i]) at 2i and cos(p * cosine[i]) at 2i + 1 (or sin again)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = (position * sine).sin()
    table[:, 1::2] = (position * cosine).sin() if cosine_also_sine else (position * cosine).cos()
    return table


def _own_index(T, D):
    """Dimension j's frequency from j itself: the cosine at 2i + 1 gets 10000^(-(2i + 1) / D)."""
    return _with_frequencies(T, D, 10_000.0 ** (-_pairs(D) / D), 10_000.0 ** (-(_pairs(D) + 1) / D))


def sinusoidal_cases() -> list[Case]:
    return [Case(label, {"max_len": T, "d_model": D}, {"max_len": T, "D": D}) for label, T, D in (
        ("10 positions, D 16", 10, 16),
        ("one position, D 2: the smallest table", 1, 2),
        ("50 positions, D 6 (not a power of two)", 50, 6),
        ("400 positions, D 64: large angles", 400, 64),
    )]


def sinusoidal_picture(case: Case, want, got) -> dict:
    return pictures.heatmap("the table, positions down, dimensions across", want[0], got[0], "position",
                            "dimension")


SINUSOIDAL = Lab(
    name="sinusoidal", function="sinusoidal", title="The sinusoidal table", page="positional",
    task="Attention cannot tell word order. The 2017 paper adds a fixed code to each position: "
         "sines and cosines of wavelengths from 2π to 10000·2π, a pair of dimensions per wavelength.",
    stub=SINUSOIDAL_STUB, reference=sinusoidal_table, cases=sinusoidal_cases,
    outputs=(Output("the table", "(max_len, D)"),), answer=(sinusoidal_table,),
    mistakes=(
        Mistake("Sine and cosine are swapped: even dimensions (0, 2, ...) take the sine, odd ones the cosine.",
                lambda T, D: _table(T, D, _pairs(D), swap=True)),
        Mistake("The sines fill the first half and the cosines the second (a layout some code uses); here "
                "they interleave: sin at 2i, cos at 2i + 1.", lambda T, D: _table(T, D, _pairs(D), "halves")),
        Mistake("The exponent uses i where the formula has 2i: pair i's frequency is 10000^(-2i / D), "
                "so with i = 0, 1, 2, ... the exponent is 0, 2/D, 4/D, ...",
                lambda T, D: _table(T, D, torch.arange(D // 2, dtype=torch.float32))),
        Mistake("The positions start at 1: the first row is position 0 (sin 0 = 0, cos 0 = 1).",
                lambda T, D: _table(T, D, _pairs(D), first_position=1), ("arange",)),
        Mistake("The exponent has the wrong sign: the frequencies fall, 10000^(-2i / D), from 1 for the first pair "
                "to nearly 1/10000; yours grow (the position is multiplied by 10000^(2i / D)).",
                lambda T, D: _table(T, D, -_pairs(D)), ("**", "pow", "exp")),
        Mistake("The exponent is 2i, not 2i / D: from the second pair on 10000^(-2i) is 0 in float32, so those "
                "dimensions hold sin 0 and cos 0. Divide by d_model.", lambda T, D: _table(T, D, _pairs(D) * D),
                ("**", "pow", "exp")),
        Mistake("Each dimension took a frequency of its own (j for dimension j): a sine and its cosine share one, "
                "10000^(-2i / D) for both 2i and 2i + 1.", _own_index, ("**", "pow", "exp")),
        Mistake("math.log10 where the formula needs the natural logarithm: exp(-ln(10000) · 2i / D) is "
                "10000^(-2i / D); with log10 the frequencies fall too slowly.",
                lambda T, D: _with_frequencies(T, D, *[torch.exp(-math.log10(10_000.0) * _pairs(D) / D)] * 2),
                ("log10",)),
        Mistake("Every pair has frequency 1: `2i // D` is an integer division, 0 for every pair below D. "
                "Divide as floats: `torch.arange(0, D, 2).float() / D`.", lambda T, D: _table(T, D, _pairs(D) * 0),
                ("//",)),
        Mistake("Sines in every dimension: the odd dimensions take the cosine of the same angle.",
                lambda T, D: _with_frequencies(T, D, *[10_000.0 ** (-_pairs(D) / D)] * 2, cosine_also_sine=True),
                ("sin",)),
    ),
    rtol=0.0, atol=2e-4, picture=sinusoidal_picture,
    hints=(
        "`position = torch.arange(max_len).float()[:, None]` is (T, 1); `two_i = torch.arange(0, d_model, 2)` "
        "is (D/2,).",
        "`angle = position / 10000 ** (two_i / d_model)` broadcasts to (T, D/2).",
        "Fill a `torch.zeros(max_len, d_model)`: `table[:, 0::2] = angle.sin()`, `table[:, 1::2] = angle.cos()`.",
    ),
)

# -- rope ----------------------------------------------------------------------------------

ROPE_STUB = header("rope", "rotary position embedding (RoPE)") + '''
import torch
from torch import Tensor


def apply_rope(x: Tensor, start: int, base: float = 10_000.0) -> Tensor:
    """Rotate each pair (x[2i], x[2i + 1]) of the vector at position m by the angle m * theta_i,
    theta_i = base^(-2i / Dh):  (a, b) -> (a cos - b sin, a sin + b cos).

    x      (B, H, T, Dh)   queries or keys of T tokens, at positions start, start + 1, ...
    start  the position of the first of them (0, or how many tokens a KV cache already holds)
    base   10,000 in minitx's models; a pretrained model may use another (SmolLM2: 100,000)
    returns (B, H, T, Dh), float32; x is left as it was
    """
    raise NotImplementedError
'''


def rope_reference(x, start):
    return rope(x, start)


def _theta(Dh):
    return 10_000.0 ** (-torch.arange(0, Dh, 2, dtype=torch.float32) / Dh)


def _rope_with(x, start, theta=_theta, split="pairs", put=None, swap=False, direction=1.0, positions=None):
    """RoPE with one thing changed: the pairs read one way and written back another (`split`, `put`:
    "pairs" of neighbours, 2i with 2i + 1, or "halves", i with i + Dh/2 as GPT-NeoX and Hugging Face's
    Llama lay them out), sin and cos swapped, the turn reversed, other positions (positions(start, T)),
    or another theta."""
    T, Dh = x.size(-2), x.size(-1)
    position = torch.arange(start, start + T, dtype=torch.float32) if positions is None else positions(start, T)
    angle = position[:, None] * theta(Dh)                                            # (T, Dh/2)
    cos, sin = angle.cos(), direction * angle.sin()
    cos, sin = (sin, cos) if swap else (cos, sin)
    a, b = (x[..., 0::2], x[..., 1::2]) if split == "pairs" else (x[..., : Dh // 2], x[..., Dh // 2:])
    first, second = a * cos - b * sin, a * sin + b * cos
    if (put or split) == "halves":
        return torch.cat([first, second], dim=-1)
    return torch.stack([first, second], dim=-1).flatten(-2)


def rope_cases() -> list[Case]:
    def case(label, B, H, T, Dh, start, seed, scale=1.0):
        return Case(label, {"x": randn(B, H, T, Dh, seed=seed, scale=scale), "start": start},
                    {"B": B, "H": H, "T": T, "Dh": Dh})

    return [
        case("start 0 (B 2, H 3, T 5, Dh 4)", 2, 3, 5, 4, 0, 0),
        case("start 6: tokens after six in a KV cache", 2, 3, 5, 4, 6, 1),
        case("start 37, Dh 8", 1, 2, 3, 8, 37, 2),
        case("one token at position 100, as when generating", 2, 1, 1, 6, 100, 3),
        case("larger values, start 3", 1, 2, 4, 12, 3, 4, scale=5.0),
    ]


def rope_picture(case: Case, want, got) -> dict:
    start = case.args["start"]
    return pictures.heatmap("review 0, head 0, after rotation", want[0][0, 0], got[0][0, 0], "position",
                            "dimension", [str(start + t) for t in range(want[0].size(2))])


ROPE = Lab(
    name="rope", function="apply_rope", title="Rotary position embedding (RoPE)", page="positional",
    task="RoPE adds nothing to the embeddings: it rotates queries and keys, pair by pair, by an "
         "angle that grows with the position, so that q·k depends only on how far apart two tokens "
         "are. With a KV cache the new tokens start at `start`, not 0.",
    stub=ROPE_STUB, reference=rope_reference, cases=rope_cases,
    outputs=(Output("the rotated x", "(B, H, T, Dh)"),), answer=(rope_angles, apply_rope, rope),
    mistakes=(
        Mistake("RoPE ignored `start`: your output equals minitx's for start = 0. Token t of x is at "
                "position start + t.", lambda x, start: rope(x, 0), ("arange",)),
        Mistake("Dimension i was paired with i + Dh/2 (the layout of GPT-NeoX and Hugging Face's Llama); "
                "minitx pairs neighbours, 2i with 2i + 1: `x[..., 0::2]` and `x[..., 1::2]`.",
                lambda x, start: _rope_with(x, start, split="halves")),
        Mistake("The rotation goes the wrong way: (a, b) turns to (a cos − b sin, a sin + b cos).",
                lambda x, start: _rope_with(x, start, direction=-1.0)),
        Mistake("theta_i uses i where it should use 2i: theta_i = 10000^(-2i / Dh) for pairs i = 0, 1, ...",
                lambda x, start: _rope_with(x, start, lambda Dh: 10_000.0 ** (
                    -torch.arange(Dh // 2, dtype=torch.float32) / Dh))),
        Mistake("The positions are off by one: token t is at position start + t, the first at `start` itself.",
                lambda x, start: rope(x, start + 1), ("arange",)),
        Mistake("cos and sin are swapped: the pair (a, b) turns to (a cos − b sin, a sin + b cos).",
                lambda x, start: _rope_with(x, start, swap=True), ("cos", "sin")),
        Mistake("The exponent has the wrong sign: theta_i = base^(-2i / Dh) falls from 1 for the first pair; "
                "yours grows.", lambda x, start: _rope_with(x, start, lambda Dh: 1 / _theta(Dh)), ("**", "pow", "exp")),
        Mistake("The neighbours (2i, 2i + 1) were rotated but written back as two halves: put each rotated pair "
                "back side by side, `torch.stack([..., ...], dim=-1).flatten(-2)`.",
                lambda x, start: _rope_with(x, start, put="halves"), ("cat",)),
        Mistake("The halves (i, i + Dh/2) were rotated but written back as neighbours: minitx pairs neighbours on "
                "both sides, `x[..., 0::2]` and `x[..., 1::2]`.",
                lambda x, start: _rope_with(x, start, split="halves", put="pairs"), ("stack", "flatten")),
        Mistake("Every token was turned by the angle of position `start`: token t stands at start + t.",
                lambda x, start: _rope_with(x, start, positions=lambda s, T: torch.full((T,), float(s))),
                ("arange", "full")),
        Mistake("The angle did not grow with the position: every token turned by theta_i, as if at position 1. "
                "The angle is m * theta_i for the token at position m.",
                lambda x, start: _rope_with(x, start, positions=lambda s, T: torch.ones(T)),
                ("cos", "sin")),
        Mistake("Every pair turned at the same speed (theta_i = 1, the angle the position itself): theta_i = "
                "base^(-2i / Dh) slows the later pairs down.",
                lambda x, start: _rope_with(x, start, theta=lambda Dh: torch.ones(Dh // 2)),
                ("**", "pow", "cos")),
    ),
    rtol=1e-4, atol=2e-4, picture=rope_picture,
    hints=(
        "Angles: `theta = 10000 ** (-torch.arange(0, Dh, 2) / Dh)` (Dh/2 of them) and "
        "`position = torch.arange(start, start + T)`; `angle = position[:, None] * theta` is (T, Dh/2).",
        "The pairs: `a, b = x[..., 0::2], x[..., 1::2]`, each (B, H, T, Dh/2); cos and sin broadcast.",
        "`torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)` puts each pair back "
        "side by side.",
    ),
)
