"""What a wrong answer's difference looks like, for the mistakes no lab lists by name.

A learner told "48 of 48 values differ" learns little. The shape of the difference says more:
yours may be minitx's times a constant (a missing sqrt(Dh)), transposed, shifted by one position,
wrong in some heads only, only where the values are small (an eps), only where the mask hides,
only on the cases with several tokens, or minitx's answer to a neighbouring input (position + 1).
Each function below looks for one such shape and says it in a sentence; `explain` tries them in order.
Everything here runs where the learner's code never ran: on tensors already returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .compare import notation_letters
from .lab import Case

# what a size's letter stands for, and a question a difference along it raises
AXES = {
    "B": ("batch row", "something computed across the batch (a mean or max over dim 0?), or a mask per row?"),
    "H": ("head", "which key/value head each query head reads (h // n_rep)?"),
    "G": ("key/value head", "which key/value head each query head reads (h // n_rep)?"),
    "T": ("position", "the mask, or where the positions start?"),
    "S": ("key position", "the mask, or which keys are read?"),
    "L": ("cache slot", "which slots are written and read?"),
    "max_len": ("position", "where the positions start?"),
    "N": ("row", "something computed across rows?"),
    "E": ("expert", "how the experts are counted?"),
    "k": ("choice", "the order of the choices?"),
}
LAST_AXIS_QUESTION = "how the dimensions are paired or laid out (2i with 2i + 1, or i with i + D/2)?"


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    return torch.isclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)


def axis_names(notation: str, shape: torch.Size, dims: dict[str, int]) -> list[str]:
    """A letter for each axis: '(B, H, T, Dh)' as it is; '(..., D)' with the case's own leading letters."""
    letters = notation_letters(notation)
    if "..." in letters:
        tail = letters[letters.index("...") + 1:]
        lead = [name for name in dims if name not in tail][: len(shape) - len(tail)]
        letters = lead + tail
    return letters if len(letters) == len(shape) else [f"axis {i}" for i in range(len(shape))]


def _word(letter: str) -> str:
    return AXES.get(letter, (letter,))[0]


def _list(indices: list[int]) -> str:
    return ", ".join(map(str, indices[:-1])) + (" and " if len(indices) > 1 else "") + str(indices[-1])


# -- constants -----------------------------------------------------------------------------------

def named_constants(case: Case) -> list[tuple[str, float, str]]:
    """Numbers a factor may be, as (how it reads, its value, what it is made of): the case's sizes and
    numeric arguments, their roots, and the usual suspects."""
    sizes = {**case.dims, **{k: v for k, v in case.args.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    found = []
    for name, n in sizes.items():
        if n not in (0, 1) and math.isfinite(n):
            given = f", with {name} = {n}"
            found += [(name, n, given), (f"1/{name}", 1 / n, given)]
            if n > 0:
                found += [(f"√{name}", math.sqrt(n), given), (f"1/√{name}", 1 / math.sqrt(n), given)]
    return found + [("2", 2.0, ""), ("1/2", 0.5, ""), ("ln 2", math.log(2), ""), ("1/ln 2", 1 / math.log(2), ""),
                    ("ln 10", math.log(10), "")]


def _what_constant(c: float, case: Case) -> str:
    return next((f" (= {name}{given})" for name, value, given in named_constants(case)
                 if abs(c - value) <= 1e-3 * abs(value)), "")


def constant_factor(want: torch.Tensor, got: torch.Tensor, case: Case, rtol: float, atol: float) -> str | None:
    """Yours equals minitx's times one number (or plus one number)."""
    w, g = want.double().flatten(), got.double().flatten()
    scale = float(w.abs().max()) if w.numel() else 0.0
    if not scale or not (w.isfinite().all() and g.isfinite().all()):
        return None
    c = float(w @ g / (w @ w))
    if abs(c - 1) > 1e-4 and _close(c * w, g, 10 * rtol, 10 * atol + 1e-6 * scale).all():
        if abs(c + 1) < 1e-4:
            return ("Yours is minitx's with the sign flipped, everywhere: a minus sign, or a subtraction the "
                    "wrong way round.")
        return (f"Yours is minitx's times {c:.4g}{_what_constant(c, case)}, everywhere: a factor missing, applied "
                "twice or upside down (a division where a multiplication belongs?).")
    shift = float((g - w).mean())
    if w.numel() > 1 and abs(shift) > 10 * atol and _close(w + shift, g, 10 * rtol, 10 * atol).all():
        return f"Yours is minitx's plus {shift:.4g}{_what_constant(shift, case)}, everywhere: a constant added."
    return None


# -- rearranged ----------------------------------------------------------------------------------

def rearranged(want: torch.Tensor, got: torch.Tensor, letters: list[str], rtol: float, atol: float) -> str | None:
    """Yours holds minitx's values in another place: two axes swapped, one reversed, or shifted by one."""
    n = want.dim()
    for i in range(n):
        for j in range(i + 1, n):
            if want.size(i) == want.size(j) > 1 and _close(want.transpose(i, j), got, rtol, atol).all():
                return (f"Yours is minitx's with two axes swapped, {letters[i]} and {letters[j]} (a transpose): "
                        f"check which dimension each index runs over.")
    for i in range(n):
        size, word = want.size(i), _word(letters[i])
        if size <= 2:
            continue
        if _close(want.flip(i), got, rtol, atol).all():
            return f"Yours is minitx's reversed along {letters[i]}: {word} 0 is minitx's last."
        for sign, yours, theirs, where in (("-", 1, 0, "before"), ("+", 0, 1, "after")):   # got[t] = want[t -/+ 1]
            if _close(got.narrow(i, yours, size - 1), want.narrow(i, theirs, size - 1), rtol, atol).all():
                return (f"Yours is minitx's shifted by one along {letters[i]}: your {word} t holds minitx's {word} "
                        f"t {sign} 1 (the one {where} it): an off-by-one in the positions or the index.")
    return None


# -- where it differs -----------------------------------------------------------------------------

def _magnitudes(case: Case, want: torch.Tensor) -> torch.Tensor:
    """Each last-axis vector's root mean square, of the input of the output's shape if there is one."""
    source = next((v for v in case.args.values() if isinstance(v, torch.Tensor) and v.shape == want.shape
                   and v.is_floating_point()), want)
    return source.double().pow(2).mean(-1).sqrt().flatten()


def small_values(want, got, case: Case, wrong: torch.Tensor) -> str | None:
    """Only the vectors whose values are small differ: an eps in the wrong place or of the wrong size."""
    if want.dim() < 2:
        return None
    bad = wrong.reshape(-1, want.size(-1)).any(-1)
    if not bad.any() or bad.all():
        return None
    size = _magnitudes(case, want)
    if size[bad].max() < size[~bad].min():
        return (f"Only the vectors whose values are small differ (root mean square at most "
                f"{float(size[bad].max()):.2g}; "
                f"the others, from {float(size[~bad].min()):.2g}, match): an eps in the wrong place or of the "
                "wrong size?")
    return None


def masked_only(want, case: Case, wrong: torch.Tensor) -> str | None:
    """Only where a mask argument is False (hidden or [PAD] positions) does yours differ."""
    for name, value in case.args.items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.bool and not value.all():
            try:
                hidden = (~value).expand(want.shape)
            except RuntimeError:
                continue
            if wrong.any() and not (wrong & ~hidden).any():
                return (f"Yours differs only where `{name}` is False, at the positions it hides: what happens "
                        "there (weight on a hidden key, a value left in a hidden slot)?")
    return None


def slices(want, case: Case, wrong: torch.Tensor, letters: list[str]) -> str | None:
    """Only some slices along one axis differ: which heads, which positions, which half of the dimensions."""
    best = None
    for axis, letter in enumerate(letters):
        size = want.size(axis)
        others = [d for d in range(want.dim()) if d != axis]
        bad = wrong.any(dim=others) if others else wrong
        indices = bad.nonzero().flatten().tolist()
        if size > 1 and 0 < len(indices) < size and (best is None or len(indices) / size < best[0]):
            best = (len(indices) / size, axis, letter, indices, size)
    if best is None:
        return None
    _, axis, letter, indices, size = best
    last = axis == want.dim() - 1
    shown = ", ".join(map(str, indices[:4])) + ", ..." if len(indices) > 4 else _list(indices)
    if last and indices[0] >= size // 2:
        which = f"only the second half of {letter} ({'all of it' if len(indices) == size - size // 2 else shown})"
    elif last and indices[-1] < size // 2:
        which = f"only the first half of {letter} ({'all of it' if len(indices) == size // 2 else shown})"
    elif last and len({i % 2 for i in indices}) == 1:
        which = f"only {'even' if indices[0] % 2 == 0 else 'odd'} dimensions of {letter} ({shown})"
    else:
        word = _word(letter)
        which = f"only {word}{'s' * (len(indices) > 1)} {_list(indices)} of {size}"
        padded = _padded_rows(case) if letter == "B" else None
        if padded == indices:
            which += " (the ones with [PAD] positions)"
        elif letter in ("T", "S", "L", "max_len") and indices == list(range(indices[0], size)):
            which = f"only from {word} {indices[0]} on"
    question = LAST_AXIS_QUESTION if last and letter not in AXES else AXES.get(letter, ("", ""))[1]
    return f"Yours differs in {which}; the rest matches minitx's. {question[:1].upper()}{question[1:]}".rstrip()


def _padded_rows(case: Case) -> list[int] | None:
    for value in case.args.values():
        if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.dim() > 1 and value.size(0) > 1:
            return (~value).flatten(1).any(1).nonzero().flatten().tolist()
    return None


# -- another input, another case -----------------------------------------------------------------

def neighbouring_input(case: Case, want: torch.Tensor, got: torch.Tensor,
                       answer: Callable[[dict], torch.Tensor | None], rtol: float, atol: float) -> str | None:
    """Yours is minitx's answer to a neighbouring input (and that answer is not minitx's to this one): an
    integer argument one off, or a float argument 0."""
    for name, value in case.args.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        tries = (value - 1, value + 1) if isinstance(value, int) else (0.0,) if value else ()
        for other in tries:
            if isinstance(value, int) and other < 0:
                continue
            there = answer({**case.args, name: other})
            if there is None or there.numel() != got.numel() or \
                    _close(there.flatten(), want.flatten(), rtol, atol).all():
                continue
            if _close(there.flatten(), got.flatten(), rtol, atol).all():
                return (f"Yours equals minitx's answer for {name} = {other} (this case has {name} = {value}): "
                        f"{'an off-by-one in' if isinstance(value, int) else 'left out'} `{name}`?")
    return None


def _features(case: Case) -> dict[str, object]:
    """What tells cases apart: their sizes, their numeric arguments, and which arguments are None."""
    found: dict[str, object] = dict(case.dims)
    for name, value in case.args.items():
        if value is None:
            found[f"`{name}`"] = "None"
        elif isinstance(value, torch.Tensor) and value.dtype == torch.bool:
            found[f"`{name}`"] = "given"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.setdefault(name, value)
    return found


def across_cases(cases: list[Case], passed: list[bool]) -> str | None:
    """A size or argument that tells the cases yours matches from those it does not: T = 1 against T > 1."""
    if all(passed) or not any(passed):
        return None
    features = [_features(case) for case in cases]
    for name in features[0]:
        if not all(name in f for f in features):
            continue
        good = [f[name] for f, ok in zip(features, passed) if ok]
        bad = [f[name] for f, ok in zip(features, passed) if not ok]
        if set(map(str, good)) & set(map(str, bad)):
            continue
        if all(isinstance(v, (int, float)) for v in good + bad):
            if max(good) < min(bad):
                split = f"{name} ≤ {max(good):g}", f"{name} ≥ {min(bad):g}"
            elif min(good) > max(bad):
                split = f"{name} ≥ {min(good):g}", f"{name} ≤ {max(bad):g}"
            else:
                continue
            if name == "T" and set(good) == {1}:
                return ("Yours matches minitx's on every case with one token (T = 1) and differs on every case with "
                        "T > 1: something that only matters once there are several tokens (the mask? the positions?).")
        elif len(set(map(str, good))) == 1 and len(set(map(str, bad))) == 1:
            split = f"{name} {good[0]}", f"{name} {bad[0]}"
        else:
            continue
        return (f"Yours matches minitx's on every case with {split[0]} and differs on every case with {split[1]}: "
                "what changes between them?")
    return None


# -- all together ---------------------------------------------------------------------------------

def spread(want: torch.Tensor, got: torch.Tensor, letters: list[str]) -> str:
    """The last word when no pattern fits: the difference is everywhere; how large yours is, and how alike."""
    w, g = want.double().flatten(), got.double().flatten()
    where = f"every {', '.join(letters[:-1])} and {letters[-1]}" if len(letters) > 1 else "every value"
    text = f"Yours differs from minitx's across {where}, and is not a multiple, a transpose, a shift or a slice of it"
    if w.numel() > 2 and g.isfinite().all() and float(w.std()) > 0 and float(g.std()) > 0:
        ratio = float(g.pow(2).mean().sqrt() / w.pow(2).mean().sqrt())
        r = float(torch.corrcoef(torch.stack([w, g]))[0, 1])
        text += (f": your values are {ratio:.2g} times the size of minitx's and follow them with correlation "
                 f"{r:.2f} ({'a distortion of the right values' if r > 0.9 else 'a different computation'})")
    return text + ". Compare your intermediate values with the hints, one line at a time."


def explain(want: torch.Tensor, got: torch.Tensor, notation: str, case: Case, rtol: float, atol: float,
            answer: Callable[[dict], torch.Tensor | None], last_word: bool = False) -> str | None:
    """The first pattern that fits the difference between one wrong output and minitx's, in a sentence
    (with `last_word`, how the difference is spread if none fits). answer(args) is minitx's same output
    for other arguments. None for outputs that are not float tensors."""
    if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor) and want.is_floating_point()
            and want.shape == got.shape and got.is_floating_point()):
        return None
    if want.dim() == 0:
        want, got = want[None], got[None]
    letters = axis_names(notation, want.shape, case.dims)
    wrong = ~_close(want, got, rtol, atol)
    if not got.any() and want.any():
        return "Yours is all zeros: the result is never written into the tensor you return?"
    return (neighbouring_input(case, want, got, answer, rtol, atol)
            or constant_factor(want, got, case, rtol, atol)
            or rearranged(want, got, letters, rtol, atol)
            or small_values(want, got, case, wrong)
            or masked_only(want, case, wrong)
            or slices(want, case, wrong, letters)
            or (spread(want, got, letters) if last_word else None))
