"""Build it: labs in which the learner writes each piece of the transformer.

Each lab is one function with a fixed signature and a docstring in the package's shape
notation (`minitx.labs.exercises`). The learner's version is checked against minitx's
own (`checking`), in a separate process with limits on time and memory (`sandbox`),
and can then run inside the real model in place of minitx's (`plug`, `in_model`).

    python -m minitx.labs list
    python -m minitx.labs start DIR              # a stub file per lab
    python -m minitx.labs check attention DIR/attention.py
"""

from __future__ import annotations

from .exercises import LABS
from .lab import Case, Lab, Mistake, Output

__all__ = ["LABS", "Case", "Lab", "Mistake", "Output", "get_lab"]


def get_lab(name: str) -> Lab:
    """The lab of this name; ValueError naming the labs there are if there is none."""
    for lab in LABS:
        if lab.name == name:
            return lab
    raise ValueError(f"there is no lab named {name!r}; the labs are {', '.join(lab.name for lab in LABS)}.")
