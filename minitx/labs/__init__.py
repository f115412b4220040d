"""Build it: labs in which the learner writes each piece of the transformer.

    exercises/          each lab: the function to write, minitx's answer, cases, ten or more named mistakes
    checking.py         the checks, in the order a learner can act on; compare.py, pictures.py: their parts
    difference.py       what a difference no named mistake explains looks like (a factor, a transpose, T > 1)
    quote.py            the learner's own line a message points at, from the file's syntax tree
    imports.py          what of minitx a learner's file uses, from its syntax tree
    worker.py           the lab worker: judges (minitx's answers, the comparison, the verdict); LabWorker
    learner_process.py  the learner's process: what runs in it, and the function as the checker calls it
    swap_in.py          a lab's function at the model's swap point (minitx.swaps)
    demos.py, trial.py  the real model with the learner's function: the pages' demos, SmolLM2 ("try")
    training_run.py     a training run with the learner's code, confined; the app's run launcher
    cli.py              python -m minitx.labs list | start | check | try

The learner's code is started, confined and ended by minitx.sandbox; judged here, in the worker.
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
