"""What a lab is: one function to write, minitx's answer, the inputs it is tried on, and the
mistakes it knows by sight.

A lab never runs the learner's code itself: `minitx.labs.checking` does, in a
separate process in the sandbox (`minitx.sandbox`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Output:
    """One thing the function returns, as the messages name it.

    kind "tensor" is checked for shape (named by `notation`, e.g. "(B, H, T, Dh)") and
    dtype; "number" for being a number; "value" for its Python type, then for equality.
    """

    name: str
    notation: str
    kind: str = "tensor"
    dtype: torch.dtype | None = torch.float32


@dataclass
class Case:
    """One call: the arguments in order, what is special about them, and the sizes of the
    notation's letters (so a shape can be named: (2, 4, 3, 6) is (B, H, T, Dh))."""

    label: str
    args: dict
    dims: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A usual wrong answer, written out: when the learner's output equals `wrong`'s (and not
    minitx's), `message` says what they most likely did. `lines` name what the learner's line
    holding the mistake computes (minitx.labs.quote: "softmax", "@", "write:cache_k"), so the
    message can quote it."""

    message: str
    wrong: Callable
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lab:
    name: str                                   # the command line's NAME, e.g. "attention"
    function: str                               # the function the learner writes
    title: str
    page: str                                   # the concept page it belongs to, e.g. "attention"
    task: str                                   # what to write, in Markdown, above the editor
    stub: str                                   # the file a learner starts from
    reference: Callable                         # minitx's answer, with the stub's signature
    cases: Callable[[], list[Case]]             # simplest first, then the adversarial ones
    outputs: tuple[Output, ...]
    answer: tuple = ()                          # the minitx functions whose source is the answer
    mistakes: tuple[Mistake, ...] = ()
    properties: tuple[Callable, ...] = ()       # (fn, case, call) -> a message when a rule is broken
    mutates: tuple[str, ...] = ()               # arguments the function must change in place
    rtol: float = 1e-4
    atol: float = 1e-5
    compare: Callable | None = None             # (want, got) -> Comparison for "value" outputs
    picture: Callable | None = None             # (case, want, got) -> a picture dict, see pictures.py
    hints: tuple[str, ...] = ()
