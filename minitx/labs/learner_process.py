"""The learner's process, both ends: what runs in it (`serve`), and the learner's function as the checker
calls it from outside (`load`, `RemoteFunction`).

A fork server (minitx.sandbox.fork_server) ran `warm()` once: torch and the labs imported, and for a
"try" the pretrained model loaded. Each job's process is a fork of it that runs `serve()`; the first
message sets its limits and token, then it loads the learner's file and runs the function on the inputs
it is sent, answering with what came out, as data (minitx.sandbox.wire):

    {"op": "start", "token": T, "limits": {...}}              -> {"started": true}
    {"op": "load", "lab": NAME, "source": ..., "filename": ...} -> {"loaded": true} | {"learner_error": ...}
    {"op": "call", "args": [...]}                              -> {"returned", "args_after"} | {"raised"} | {"too_large"}
    {"op": "demo", "request": ..., "with": {...}}              -> {"result": ...}   (minitx.labs.demos)
    {"op": "write", "ids": [...], "max_new_tokens": N, "sampling": {...}} -> {"result": ...}  (minitx.labs.trial)

A "write" with no "load" before it is minitx's own run, in a process no learner's code ran in. It never
says whether the function is right: the lab worker compares what comes back with minitx's answers.
"""

from __future__ import annotations

import os

import torch

from ..pretrained import load_pretrained
from ..sandbox.job import Job, Stopped
from ..sandbox.limits import LIMITS, Limits, apply
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import decode, encode, least_size, parse, protocol_stream, send
from . import demos, get_lab
from .checking import LearnerCodeError, LearnerRaised, error_text, learner_lines, load_function, out_of_memory

PRETRAINED = None                 # the pretrained model warm() loaded, if any: every job's process shares it


def warm(model: str | None = None) -> None:
    """Done once in the fork server: one thread (a fork copies no thread pool), the first operation's
    costs paid, and the pretrained model at `model` loaded for jobs that run it."""
    global PRETRAINED
    torch.set_num_threads(1)
    torch.ones(8, 8) @ torch.ones(8, 8)
    PRETRAINED = load_pretrained(model) if model else None


def raised(error: BaseException, filename: str, limits: Limits) -> dict:
    """An exception of the learner's code as data: what the checker needs to say what happened."""
    lines, line = learner_lines(error, filename)
    return {"type": type(error).__name__, "text": error_text(error)[:2000], "lines": lines, "line": line,
            "memory": out_of_memory(error, limits), "not_implemented": isinstance(error, NotImplementedError)}


def serve() -> None:
    """Answer the job's messages on stdin until it closes (fd 0, 1 and 2 are the job's own pipes)."""
    protocol, token, limits, lab, fn, cases, filename = protocol_stream(), None, LIMITS, None, None, None, "yours.py"
    for line in os.fdopen(0, "rb"):
        request = parse(line) or {}
        op, answer = request.get("op"), {}
        try:
            if op == "start":
                token, limits = request["token"], Limits(**request["limits"])
                apply(limits)
                answer = {"started": True}
            elif op == "load":
                lab, filename, cases = get_lab(request["lab"]), request.get("filename") or "yours.py", None
                fn, answer = load_function(lab, request["source"], filename), {"loaded": True}
            elif op == "call":
                if cases is None and any(isinstance(a, dict) and "__case_arg__" in a for a in request["args"]):
                    cases = lab.cases()           # the case's functions (a block's norms), made here again
                args = [cases[a["__case_arg__"][0]].args[a["__case_arg__"][1]]
                        if isinstance(a, dict) and "__case_arg__" in a else decode(a) for a in request["args"]]
                returned = fn(*args)
                after = [None if callable(a) else a for a in args]
                size = least_size(returned) + least_size(after)   # said before it becomes a list too large to hold
                answer = {"too_large": size} if size > limits.reply_bytes else \
                    {"returned": encode(returned), "args_after": [None if a is None else encode(a) for a in after]}
            elif op == "write":                   # the pretrained model writing, with the learner's function if loaded
                answer = {"result": demos.write_with(PRETRAINED, [int(i) for i in request["ids"]],
                                               int(request["max_new_tokens"]), dict(request["sampling"]),
                                               {lab.name: fn} if fn is not None else {})}
            elif op == "demo":
                functions = {lab.name: fn, **{other: load_function(get_lab(other), text, f"{other}.py")
                                              for other, text in (request.get("with") or {}).items()}}
                answer = {"result": demos.run(lab, functions, decode(request["request"]))}
        except LearnerCodeError as error:
            answer = {"learner_error": {"stage": error.stage, "title": error.title, "detail": error.detail,
                                        "line": error.line}}
        except BaseException as error:            # SystemExit and KeyboardInterrupt too: the learner's
            answer = {"raised": raised(error, filename, limits)}
        send(protocol, {**answer, "token": token})


# -- from outside: the checker's view of the learner's function -------------------------------------

def load(job: Job, lab, source: str, filename: str, cases=None) -> RemoteFunction:
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
    """The learner's function across the boundary: the arguments go as data, what it returned and the
    arguments as it left them come back as data; its exceptions arrive as LearnerRaised."""

    def __init__(self, job: Job, cases: list):
        self.job, self.cases = job, cases

    def _argument(self, value):
        if callable(value) and not isinstance(value, torch.Tensor):      # a case's own function, by place
            where = next(([i, name] for i, case in enumerate(self.cases) for name, arg in case.args.items()
                          if arg is value), None)
            if where is None:
                raise TypeError("only a case's own functions can be passed to the learner's function.")
            return {"__case_arg__": where}
        return encode(value)

    def __call__(self, *args):
        answer = self.job.ask({"op": "call", "args": [self._argument(a) for a in args]})
        if "raised" in answer:
            if answer["raised"].get("not_implemented"):
                raise NotImplementedError(answer["raised"].get("text", ""))
            raise LearnerRaised(answer["raised"])
        try:
            returned, after = decode(answer["returned"]), [None if a is None else decode(a) for a in answer["args_after"]]
        except (KeyError, TypeError, ValueError):
            raise Stopped(Verdict(Kind.ENDED, {"how": "it sent back something that is not an answer"})) from None
        for mine, theirs in zip(args, after):     # the caller's arguments as the function left them (a KV cache)
            if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor):
                mine.copy_(theirs) if (mine.shape, mine.dtype) == (theirs.shape, theirs.dtype) else mine.set_(theirs)
            elif isinstance(mine, dict) and isinstance(theirs, dict):
                mine.clear()
                mine.update(theirs)
            elif isinstance(mine, list) and isinstance(theirs, list):
                mine[:] = theirs
        return returned
