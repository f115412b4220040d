"""The lab worker: `python -m minitx.labs.worker`, started by `sandbox.LabWorker`, never by hand.

It reads one JSON request per line on stdin and answers one JSON line on stdout. The
learner's code of a check, call, demo or try runs in a learner process of its own, isolated
where bwrap runs (`minitx.labs.job`); minitx's answers and the verdict are computed here. The
worker itself never runs a learner's code. It exits when its stdin closes (the server has gone).

    {"op": "check", "lab": "attention", "source": "...", "filename": "attention.py"}
    {"op": "call", "lab": "sinusoidal", "source": "...", "args": [...]}       -> the function's result
    {"op": "demo", "lab": "attention", "source": "...", "request": {...}}     -> minitx.labs.demos
    {"op": "try", "lab": "attention", "source": "...", "prompt": "...", "chat": true, "max_new_tokens": 24}
        -> SmolLM2 with minitx's function and with the learner's (minitx.labs.inside)

For "try" the worker loads the pretrained model once and keeps it (minitx's own runs are forks of
the worker, which share its weights), and so does the zygote the learner's runs are forked from.
"""

from __future__ import annotations

import json
import os
import sys


def run_job(request: dict, zygotes, limits) -> dict:
    """A check, call or demo: the learner's code in a learner process of its own (`minitx.labs.job`);
    for a check, minitx's answers and the verdict here. {"status": "ok" | "error" | "learner_error" |
    "limit", ..., "output": what the learner's code printed}."""
    from . import get_lab
    from .checking import JobStopped, LearnerCodeError, LearnerRaised, check, check_without_running
    from .job import Job
    from .sandbox import decode, encode

    lab = get_lab(request["lab"])
    source, filename = str(request["source"]), request.get("filename") or f"{lab.name}.py"
    op = request["op"]
    if op not in ("check", "call", "demo"):
        raise ValueError(f"unknown op {op!r}")
    folders = ()
    if op == "demo" and isinstance(request.get("request"), dict):
        model = request["request"].get("model")
        if isinstance(model, dict) and isinstance(model.get("checkpoint"), str):
            folders = (str(os.path.realpath(model["checkpoint"])),)      # the run it draws, read-only
    if op == "check":
        known = check_without_running(lab, source, filename)       # no process needed to say so
        if known is not None:
            return {"status": "ok", "result": known.to_dict(), "output": ""}
    job = None
    try:
        job = Job(zygotes.spawn(folders), limits)
        job.start()
        if op == "check":
            answer = {"status": "ok", "result": check(lab, source, filename, load=job.load).to_dict()}
        elif op == "call":
            function = job.load(lab, source, filename)
            answer = {"status": "ok", "result": encode(function(*decode(request["args"])))}
        else:
            job.load(lab, source, filename)
            reply = job.ask({"op": "demo", "request": request["request"], "with": request.get("with") or {}})
            if "learner_error" in reply:
                answer = {"status": "learner_error", "error": reply["learner_error"]}
            elif "raised" in reply:
                answer = {"status": "error", "message": reply["raised"].get("text", "")}
            else:
                answer = {"status": "ok", "result": reply.get("result")}
    except LearnerCodeError as error:
        answer = {"status": "learner_error", "error": {"stage": error.stage, "title": error.title,
                                                       "detail": error.detail, "line": error.line}}
    except LearnerRaised as error:
        answer = {"status": "error", "message": error.text}
    except NotImplementedError:
        answer = {"status": "error", "message": f"NotImplementedError: `{lab.function}` is not written yet."}
    except JobStopped as stop:
        answer = {"status": "limit", "message": stop.message}
    finally:
        output = job.end() if job is not None else ""
    answer["output"] = output
    return answer


class Inside:
    """The pretrained model the worker keeps for "try" jobs, and minitx's own runs of it, by prompt."""

    def __init__(self, zygotes):
        self.pretrained, self.references, self.zygotes = None, {}, zygotes

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
                              request.get("filename"), self.references.get(key), self.zygotes)
        self.references[key] = result.pop("reference")
        return {"status": "ok", "result": result, "output": result.pop("output", "")}


def main() -> None:
    protocol = os.fdopen(os.dup(1), "wb")         # answers go here; fd 1 itself now goes to stderr,
    os.dup2(2, 1)                                  # so that a stray print cannot break a JSON line
    os.set_inheritable(protocol.fileno(), False)

    def send(answer: dict) -> None:
        protocol.write(json.dumps(answer).encode() + b"\n")
        protocol.flush()

    import torch

    torch.set_num_threads(1)
    from . import demos, exercises  # noqa: F401  (imported once here, warm in every forked child)
    from .jail import isolation
    from .job import Zygotes, become_subreaper, end_orphans
    from .sandbox import Limits

    become_subreaper()
    limits = Limits(**json.loads(os.environ.get("MINITX_LABS_LIMITS") or "{}"))
    zygotes = Zygotes(limits)
    zygotes.start()                                # every job's process is forked from it: started now
    torch.ones(8, 8) @ torch.ones(8, 8)            # the first operation's one-off costs, paid here
    send({"ready": True, "pid": os.getpid(), "sandbox": isolation()})
    inside = Inside(zygotes)
    for line in sys.stdin.buffer:
        request = None
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            if request.get("op") == "sandbox":
                answer = {"status": "ok", "result": isolation(), "output": ""}
            elif request.get("op") == "try":       # minitx's run in a fork of this worker, the learner's in a job
                answer = inside.answer(request)
            else:
                answer = run_job(request, zygotes, limits)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            answer = {"status": "error", "message": f"a bad request: {error}", "output": ""}
        end_orphans(keep=zygotes.keep())           # whatever a job left behind, before the next one
        zygotes.start()                            # again, if a job's end took it down
        if isinstance(request, dict) and isinstance(request.get("request_token"), str):
            answer["request_token"] = request["request_token"]
        send(answer)


if __name__ == "__main__":
    main()
