"""The lab worker: `python -m minitx.labs.worker`, started by `sandbox.LabWorker`, never by hand.

It reads one JSON request per line on stdin and answers one JSON line on stdout. Each job
runs in a forked child under the sandbox's limits (`sandbox.run_limited`); the worker itself
never runs a learner's code. It exits when its stdin closes (the server has gone).

    {"op": "check", "lab": "attention", "source": "...", "filename": "attention.py"}
    {"op": "call", "lab": "sinusoidal", "source": "...", "args": [...]}       -> the function's result
    {"op": "demo", "lab": "attention", "source": "...", "request": {...}}     -> minitx.labs.demos
    {"op": "try", "lab": "attention", "source": "...", "prompt": "...", "chat": true, "max_new_tokens": 24}
        -> SmolLM2 with minitx's function and with the learner's (minitx.labs.inside)

For "try" the worker loads the pretrained model once and keeps it: each job's children are forks,
which share its weights instead of loading them again.
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


class Inside:
    """The pretrained model the worker keeps for "try" jobs, and minitx's own runs of it, by prompt."""

    def __init__(self):
        self.pretrained, self.references = None, {}

    def answer(self, request: dict) -> dict:
        from ..pretrained import PretrainedUnavailable, load_pretrained
        from .inside import sampling_for, try_in_model

        try:
            if self.pretrained is None:
                self.pretrained = load_pretrained(request.get("model"))
        except PretrainedUnavailable as error:
            return {"status": "error", "message": str(error), "output": ""}
        chat, tokenizer = self.pretrained.chat, self.pretrained.tokenizer
        prompt = str(request.get("prompt", ""))
        ids = chat.encode([{"role": "user", "content": prompt}]) if request.get("chat") and chat else \
            tokenizer.encode(prompt).ids
        context = self.pretrained.model.cfg.max_len - int(request.get("max_new_tokens", 24))
        ids = ids[-context:] or tokenizer.encode(" ").ids          # cut from the left to fit, never empty
        key = (tuple(ids), int(request.get("max_new_tokens", 24)), tuple(sampling_for(request["lab"]).items()))
        result = try_in_model(request["lab"], request["source"], self.pretrained, ids, key[1],
                              request.get("filename"), self.references.get(key))
        self.references[key] = result.pop("reference")
        return {"status": "ok", "result": result, "output": result.pop("output", "")}


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
    inside = Inside()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            if request.get("op") == "try":       # forks children of its own, two per job
                send(inside.answer(request))
                continue
            job = job_for(request)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
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
