"""Comparing a learner's answer with minitx's: equal, equal within a tolerance, or how far off
and where, and shapes named in the notation a lab's docstring uses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch


@dataclass
class Comparison:
    """How one output compares: `text` is the sentence a learner reads."""

    same: bool                    # exact, or within the lab's tolerance
    exact: bool
    largest: float                # the largest absolute difference (inf where one side is not finite)
    text: str


def index_text(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def compare_tensors(want: torch.Tensor, got: torch.Tensor, rtol: float, atol: float,
                    name: str = "the output") -> Comparison:
    """Element by element, NaN equal to NaN. Bool and integer tensors must match exactly."""
    if want.dtype.is_floating_point:
        close = torch.isclose(got.double(), want.double(), rtol=rtol, atol=atol, equal_nan=True)
        equal = (got == want) | (got.isnan() & want.isnan())
        difference = (got.double() - want.double()).abs()
        difference[equal] = 0.0
        difference[difference.isnan()] = float("inf")          # a NaN or inf on one side only
    else:
        close = equal = got == want
        difference = (~equal).double()
    exact, same = bool(equal.all()), bool(close.all())
    largest = float(difference.max()) if difference.numel() else 0.0
    if exact:
        return Comparison(True, True, 0.0, f"{name} is exactly minitx's.")
    if same:
        return Comparison(True, False, largest, f"{name} equals minitx's within the tolerance "
                                                f"(largest difference {largest:.1e}).")
    wrong = (~close).nonzero()
    first = tuple(wrong[0].tolist())
    where = tuple(int(i) for i in torch.unravel_index(difference.argmax(), difference.shape))
    text = (f"{name} differs from minitx's in {len(wrong):,} of {want.numel():,} values. The first is at "
            f"{index_text(first)}: minitx {_value(want[first])}, yours {_value(got[first])}. "
            f"The largest difference is {largest:.3g}, at {index_text(where)}.")
    return Comparison(False, False, largest, text)


def _value(x: torch.Tensor) -> str:
    v = x.item()
    return repr(v) if isinstance(v, bool) else f"{v:.6g}"


def notation_letters(notation: str) -> list[str]:
    """'(B, H, T, Dh)' -> ['B', 'H', 'T', 'Dh']; '(..., D)' -> ['...', 'D']."""
    return [part.strip() for part in notation.strip("() ").split(",") if part.strip()]


def shape_text(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def read_shape(shape, dims: dict[str, int], notation: str = "") -> str | None:
    """A shape read back in the notation, where every size names one letter: (2, 4, 6, 3) is
    (B, H, Dh, T) when B = 2, H = 4, T = 3 and Dh = 6. A size two letters share goes to the one
    the expected notation has (T, not S, in an output written (B, H, T, Dh)). None when still
    ambiguous."""
    expected = set(notation_letters(notation))
    by_size: dict[int, list[str]] = {}
    for letter, size in dims.items():
        by_size.setdefault(size, []).append(letter)
    letters = []
    for size in shape:
        names = by_size.get(int(size), [])
        if len(names) > 1:
            names = [n for n in names if n in expected]
        if len(names) != 1:
            return None
        letters.append(names[0])
    return "(" + ", ".join(letters) + ")"


def shape_problem(name: str, notation: str, want, got, dims: dict[str, int]) -> str | None:
    """A sentence when got's shape is not want's: expected vs got, both named."""
    if tuple(got) == tuple(want):
        return None
    text = f"{name} should be {notation} = {shape_text(want)}; yours is {shape_text(got)}"
    read = read_shape(got, dims, notation)
    if read and read != notation:
        text += f", which reads as {read}"
    if len(got) == len(want) and sorted(got) == sorted(want) and read is None:
        text += ": the right sizes in another order"
    elif math.prod(got) == math.prod(want) and read is None:
        text += ": the right number of values in another arrangement"
    return text + "."


_SPACE = re.compile(r"\s+")


def describe(value) -> str:
    """A short description of any returned value: type and, for a tensor, shape and dtype."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {shape_text(value.shape)} and dtype {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: " + ", ".join(describe(v) for v in value[:4])
    text = _SPACE.sub(" ", repr(value))
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
