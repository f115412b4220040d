"""The learner's function as the checker calls it, across the sandbox's boundary: the arguments go to
the learner's process as data (minitx.sandbox.wire), what it returned and the arguments as it left
them come back as data. Its exceptions arrive as `LearnerRaised`; a job the sandbox stopped, as
`minitx.sandbox.job.Stopped`.
"""

from __future__ import annotations

import torch

from ..sandbox.job import Job, Stopped
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import decode, encode
from .checking import LearnerCodeError, LearnerRaised


def load(job: Job, lab, source: str, filename: str, cases=None) -> "RemoteFunction":
    """The learner's file loaded in the job's process; LearnerCodeError when it gives no function."""
    answer = job.ask({"op": "load", "lab": lab.name, "source": source, "filename": filename})
    if "learner_error" in answer:
        error = answer["learner_error"]
        raise LearnerCodeError(str(error.get("stage", "load")), str(error.get("title", "")),
                               str(error.get("detail") or ""), error.get("line"))
    if "raised" in answer:
        raise LearnerRaised(answer["raised"])
    if not answer.get("loaded"):
        raise Stopped(Verdict(Kind.ENDED, {"how": "it answered out of turn"}))
    return RemoteFunction(job, cases or [])


class RemoteFunction:
    def __init__(self, job: Job, cases: list):
        self.job, self.cases = job, cases

    def _argument(self, value):
        if callable(value) and not isinstance(value, torch.Tensor):
            for i, case in enumerate(self.cases):          # a case's own function (a block's norm), by place
                for name, arg in case.args.items():
                    if arg is value:
                        return {"__case_arg__": [i, name]}
            raise TypeError("only a case's own functions can be passed to the learner's function.")
        return encode(value)

    def __call__(self, *args):
        answer = self.job.ask({"op": "call", "args": [self._argument(a) for a in args]})
        if "raised" in answer:
            raised = answer["raised"]
            if raised.get("not_implemented"):
                raise NotImplementedError(raised.get("text", ""))
            raise LearnerRaised(raised)
        try:
            returned = decode(answer["returned"])
            after = [None if a is None else decode(a) for a in answer["args_after"]]
        except (KeyError, TypeError, ValueError):
            raise Stopped(Verdict(Kind.ENDED, {"how": "it sent back something that is not an answer"})) from None
        for mine, theirs in zip(args, after):
            _leave_as(mine, theirs)
        return returned


def _leave_as(mine, theirs) -> None:
    """Make the caller's argument what the learner's function left it as (a check of changed inputs
    and of the arguments a lab must change, like a KV cache, reads it)."""
    if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor):
        if mine.shape == theirs.shape and mine.dtype == theirs.dtype:
            mine.copy_(theirs)
        else:
            mine.set_(theirs)
    elif isinstance(mine, dict) and isinstance(theirs, dict):
        mine.clear()
        mine.update(theirs)
    elif isinstance(mine, list) and isinstance(theirs, list):
        mine[:] = theirs
