"""The learner's process: what runs a learner's code, in a process used for one job only.

The zygote (`minitx.labs.zygote`) has run `warm()` once: torch and the labs imported, the
first operation's costs paid. Each job's process is a fork of it that runs `serve()`, inside
the isolated sandbox where there is one. The job's first message sets its limits and its
token; from then on it only loads the learner's file and runs the learner's function on the
inputs it is sent, answering with what came out, as data:

    {"op": "start", "token": T, "limits": {...}}              -> {"token": T, "started": true}
    {"op": "load", "lab": NAME, "source": ..., "filename": ...} -> {"loaded": true} | {"learner_error": ...}
    {"op": "call", "args": [...]}                              -> {"returned": ..., "args_after": [...]}
                                                                | {"raised": {"type", "text", ...}}
    {"op": "demo", "request": ..., "with": {...}}              -> {"result": ...}   (minitx.labs.demos)
    {"op": "write", "ids": [...], "max_new_tokens": N, "sampling": {...}}
                                    -> {"result": {"ids", "first_logits"}}   (minitx.labs.inside)

It never says whether the learner's function is right: the worker compares what comes back
with minitx's answers, computed where the learner's code never ran. Everything it prints
goes to its stderr, which the worker reads, caps and shows.
"""

from __future__ import annotations

import json
import os
import sys


def limit(limits: dict) -> None:
    """This process's limits from now on: processor time, address space, and (where the kernel
    counts them for this user) how many processes it and its children may have."""
    import resource

    from .sandbox import limit_memory

    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime + limits["cpu_seconds"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    limit_memory(limits["memory_bytes"])
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    except (ValueError, OSError, AttributeError):
        pass


def raised(error: BaseException, filename: str) -> dict:
    """An exception of the learner's code as data: what the checker needs to say what happened."""
    from .checking import error_text, learner_lines, out_of_memory

    lines, line = learner_lines(error, filename)
    return {"type": type(error).__name__, "text": error_text(error)[:2000], "lines": lines[:4000], "line": line,
            "memory": out_of_memory(error), "not_implemented": isinstance(error, NotImplementedError)}


PRETRAINED = None                 # the zygote's pretrained model, if it loaded one: every fork shares it


def warm(model: str | None = None) -> None:
    """What every job's process needs, done once in the zygote before it forks any: one thread
    (a fork copies no thread pool), torch and the labs imported, the first operation's costs paid,
    and the pretrained model at `model` loaded, for jobs that run it with the learner's function."""
    global PRETRAINED
    import torch

    torch.set_num_threads(1)
    from . import demos, exercises, inside  # noqa: F401
    from .checking import load_function  # noqa: F401
    from .sandbox import decode  # noqa: F401

    torch.ones(8, 8) @ torch.ones(8, 8)
    if model:
        from ..pretrained import load_pretrained

        PRETRAINED = load_pretrained(model)


def serve() -> None:
    """Answer the job's messages on stdin until it closes (fd 0, 1 and 2 are the job's own pipes)."""
    protocol = os.fdopen(os.dup(1), "wb")         # answers go here; fd 1 now goes to stderr, with the prints
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    token = None

    def send(answer: dict) -> None:
        protocol.write(json.dumps({**answer, "token": token}).encode() + b"\n")
        protocol.flush()

    from . import get_lab
    from .checking import LearnerCodeError, load_function
    from .sandbox import decode, encode

    lab = fn = cases = None
    filename = "your_code.py"
    for line in os.fdopen(0, "rb"):
        request = json.loads(line)
        op = request.get("op")
        if op == "start":
            token = request["token"]
            limit(request["limits"])
            send({"started": True})
        elif op == "load":
            lab, filename = get_lab(request["lab"]), request.get("filename") or "your_code.py"
            cases = None
            try:
                fn = load_function(lab, request["source"], filename)
            except LearnerCodeError as error:
                send({"learner_error": {"stage": error.stage, "title": error.title, "detail": error.detail,
                                        "line": error.line}})
                continue
            send({"loaded": True})
        elif op == "call":
            if cases is None and "__case_arg__" in line.decode("utf-8", "replace"):
                cases = lab.cases()               # the case's functions (a block's norms), made here again
            args = [cases[a["__case_arg__"][0]].args[a["__case_arg__"][1]]
                    if isinstance(a, dict) and "__case_arg__" in a else decode(a) for a in request["args"]]
            try:
                returned = fn(*args)
            except BaseException as error:       # SystemExit and KeyboardInterrupt too: the learner's
                send({"raised": raised(error, filename)})
                continue
            try:
                send({"returned": encode(returned), "args_after": [None if callable(a) else encode(a) for a in args]})
            except (TypeError, ValueError) as error:
                send({"raised": {"type": type(error).__name__, "text": f"what your function returned cannot be "
                                 f"sent back: {error}"[:500], "lines": "", "line": None, "memory": None,
                                 "not_implemented": False}})
        elif op == "write":               # the pretrained model writing with the learner's function
            from .inside import write_with

            try:
                send({"result": write_with(PRETRAINED.model, PRETRAINED.tokenizer, [int(i) for i in request["ids"]],
                                           int(request["max_new_tokens"]), dict(request["sampling"]), {lab.name: fn})})
            except BaseException as error:
                send({"raised": raised(error, filename)})
        elif op == "demo":
            from . import demos

            try:
                functions = {lab.name: fn}
                for other, text in (request.get("with") or {}).items():
                    functions[other] = load_function(get_lab(other), text, f"{other}.py")
                send({"result": demos.run(lab, functions, decode(request["request"]))})
            except LearnerCodeError as error:
                send({"learner_error": {"stage": error.stage, "title": error.title, "detail": error.detail,
                                        "line": error.line}})
            except BaseException as error:
                send({"raised": raised(error, filename)})
