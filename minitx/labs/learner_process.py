"""What runs in the learner's process: a process used for one job only, forked by a fork server
(minitx.sandbox.fork_server) inside the sandbox, that runs the learner's code and sends back what came out.

The fork server ran `warm()` once: torch and the labs imported, the first operation's costs paid,
and for a "try" the pretrained model loaded. Each job's process runs `serve()`: the job's first
message sets its limits and its token; from then on it loads the learner's file and runs the
learner's function on the inputs it is sent, answering with what came out, as data:

    {"op": "start", "token": T, "limits": {...}}              -> {"token": T, "started": true}
    {"op": "load", "lab": NAME, "source": ..., "filename": ...} -> {"loaded": true} | {"learner_error": ...}
    {"op": "call", "args": [...]}                              -> {"returned": ..., "args_after": [...]}
                                                                | {"raised": {...}} | {"too_large": bytes}
    {"op": "demo", "request": ..., "with": {...}}              -> {"result": ...}   (minitx.labs.demos)
    {"op": "write", "ids": [...], "max_new_tokens": N, "sampling": {...}}
                                    -> {"result": {"ids", "first_logits"}}   (minitx.labs.trial)

A "write" without a "load" before it is minitx's own run of the model, in a process no learner's
code ever ran in.

It never says whether the learner's function is right: the lab worker compares what comes back
with minitx's answers, computed where the learner's code never ran. What it prints goes to its
stderr, which the worker reads, caps and shows.
"""

from __future__ import annotations

import os

from ..sandbox import limits as process_limits
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import decode, encode, least_size, parse, protocol_stream, send

PRETRAINED = None                 # the pretrained model warm() loaded, if any: every job's process shares it


def raised(error: BaseException, filename: str, limits: process_limits.Limits) -> dict:
    """An exception of the learner's code as data: what the checker needs to say what happened."""
    from .checking import error_text, learner_lines, memory_asked

    lines, line = learner_lines(error, filename)
    asked = memory_asked(error)
    memory = None if asked is None else Verdict(Kind.MEMORY, {"limit_gib": (limits.memory_bytes or 0) / 2**30,
                                                              "asked": asked}).message
    return {"type": type(error).__name__, "text": error_text(error)[:2000], "lines": lines, "line": line,
            "memory": memory, "not_implemented": isinstance(error, NotImplementedError)}


def warm(model: str | None = None) -> None:
    """What every job's process needs, done once before any is forked: one thread (a fork copies no
    thread pool), torch and the labs imported, the first operation's costs paid, and the pretrained
    model at `model` loaded, for jobs that run it with the learner's function."""
    global PRETRAINED
    import torch

    torch.set_num_threads(1)
    from . import checking, demos, exercises, trial  # noqa: F401

    torch.ones(8, 8) @ torch.ones(8, 8)
    if model:
        from ..pretrained import load_pretrained

        PRETRAINED = load_pretrained(model)


def serve() -> None:
    """Answer the job's messages on stdin until it closes (fd 0, 1 and 2 are the job's own pipes)."""
    from . import demos, get_lab
    from .checking import LearnerCodeError, load_function
    from .trial import write_with

    protocol, token, limits = protocol_stream(), None, process_limits.LIMITS
    lab = fn = cases = None
    filename = "your_code.py"

    def answer(message: dict) -> None:
        send(protocol, {**message, "token": token})

    def learner_error(error: LearnerCodeError) -> None:
        answer({"learner_error": {"stage": error.stage, "title": error.title, "detail": error.detail,
                                  "line": error.line}})

    for line in os.fdopen(0, "rb"):
        request = parse(line) or {}
        op = request.get("op")
        try:
            if op == "start":
                token, limits = request["token"], process_limits.Limits(**request["limits"])
                process_limits.apply(limits)
                answer({"started": True})
            elif op == "load":
                lab, filename, cases = get_lab(request["lab"]), request.get("filename") or "your_code.py", None
                fn = load_function(lab, request["source"], filename)
                answer({"loaded": True})
            elif op == "call":
                if cases is None and any(isinstance(a, dict) and "__case_arg__" in a for a in request["args"]):
                    cases = lab.cases()           # the case's functions (a block's norms), made here again
                args = [cases[a["__case_arg__"][0]].args[a["__case_arg__"][1]]
                        if isinstance(a, dict) and "__case_arg__" in a else decode(a) for a in request["args"]]
                returned = fn(*args)
                after = [None if callable(a) else a for a in args]
                size = least_size(returned) + least_size(after)
                if size > limits.reply_bytes:     # said before it is turned into a list too large to hold
                    answer({"too_large": size})
                    continue
                answer({"returned": encode(returned), "args_after": [None if a is None else encode(a) for a in after]})
            elif op == "write":                   # the pretrained model writing, with the learner's function if loaded
                functions = {lab.name: fn} if fn is not None else {}
                answer({"result": write_with(PRETRAINED, [int(i) for i in request["ids"]],
                                             int(request["max_new_tokens"]), dict(request["sampling"]), functions)})
            elif op == "demo":
                functions = {lab.name: fn}
                for other, text in (request.get("with") or {}).items():
                    functions[other] = load_function(get_lab(other), text, f"{other}.py")
                answer({"result": demos.run(lab, functions, decode(request["request"]))})
        except LearnerCodeError as error:
            learner_error(error)
        except BaseException as error:            # SystemExit and KeyboardInterrupt too: the learner's
            answer({"raised": raised(error, filename, limits)})
