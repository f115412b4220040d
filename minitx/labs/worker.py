"""The lab worker: `python -m minitx.labs.worker`, started by `sandbox.LabWorker`, never by hand.

It reads one JSON request per line on stdin and answers one JSON line on stdout. Each job
runs in a forked child under the sandbox's limits (`sandbox.run_limited`); the worker itself
never runs a learner's code. It exits when its stdin closes (the server has gone).

    {"op": "check", "lab": "attention", "source": "...", "filename": "attention.py"}
    {"op": "call", "lab": "sinusoidal", "source": "...", "args": [...]}       -> the function's result
    {"op": "demo", "lab": "attention", "source": "...", "request": {...}}     -> minitx.labs.demos
"""

from __future__ import annotations

import json
import os
import sys


def job_for(request: dict):
    """The work a request asks for, as a function of no arguments returning JSON-ready data."""
    from . import demos, get_lab
    from .checking import check, load_function
    from .sandbox import decode, encode

    lab = get_lab(request["lab"])
    source, filename = request["source"], request.get("filename") or f"{lab.name}.py"
    op = request["op"]
    if op == "check":
        return lambda: check(lab, source, filename).to_dict()
    if op == "call":
        return lambda: encode(load_function(lab, source, filename)(*decode(request["args"])))
    if op == "demo":            # "with": other labs' files, in the model at the same time
        def demo():
            functions = {lab.name: load_function(lab, source, filename)}
            for other, text in (request.get("with") or {}).items():
                functions[other] = load_function(get_lab(other), text, f"{other}.py")
            return demos.run(lab, functions, decode(request["request"]))
        return demo
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    protocol = os.fdopen(os.dup(1), "wb")         # answers go here; fd 1 itself now goes to stderr,
    os.dup2(2, 1)                                  # so that a stray print cannot break a JSON line

    def send(answer: dict) -> None:
        protocol.write(json.dumps(answer).encode() + b"\n")
        protocol.flush()

    import torch

    torch.set_num_threads(1)
    from . import demos, exercises  # noqa: F401  (imported once here, warm in every child)
    from .checking import LearnerCodeError
    from .sandbox import Limits, run_limited

    limits = Limits(**json.loads(os.environ.get("MINITX_LABS_LIMITS") or "{}"))
    torch.ones(8, 8) @ torch.ones(8, 8)            # the first operation's one-off costs, paid here
    send({"ready": True, "pid": os.getpid()})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            job = job_for(request)
        except (ValueError, KeyError, TypeError) as error:
            send({"status": "error", "message": f"a bad request: {error}", "output": ""})
            continue

        def guarded(job=job):
            try:
                return {"ok": job()}
            except LearnerCodeError as error:       # the learner's file cannot give its function
                return {"learner_error": {"stage": error.stage, "title": error.title, "detail": error.detail,
                                          "line": error.line}}

        answer = run_limited(guarded, limits)
        if answer.get("status") == "ok":
            result = answer.pop("result")
            if "learner_error" in result:
                answer.update(status="learner_error", error=result["learner_error"])
            else:
                answer["result"] = result["ok"]
        send(answer)


if __name__ == "__main__":
    main()
