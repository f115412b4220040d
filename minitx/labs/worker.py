"""The lab worker: one process that judges the learner's code, and the server's handle on it (`LabWorker`).

    server (Streamlit) --a JSON line, a token per request--> worker (python -m minitx.labs.worker)
      worker: minitx's answers, the comparison and the verdict (minitx.labs.checking);
              the learner's code in a job of its own, forked by a fork server in the sandbox
              (minitx.sandbox.job, minitx.sandbox.confine), which only returns outputs
      <-- one JSON line: {"verdict": {...}, "result": ..., "output": ..., "request_token": ...}

    {"op": "check", "lab": "attention", "source": "...", "filename": "attention.py"}   -> a Report's dict
    {"op": "call", "lab": "sinusoidal", "source": "...", "args": [...]}                -> the function's result
    {"op": "demo", "lab": "attention", "source": "...", "request": {...}}              -> minitx.labs.demos
    {"op": "try", "lab": "attention", "source": "...", "model": PATH, "ids": [...], "max_new_tokens": 24}
        -> a pretrained model with minitx's function and with the learner's (minitx.labs.trial)

The worker is started once and kept warm (importing torch takes seconds); it never runs a learner's
code itself. It serves one request at a time, in the order they came (several app sessions share it);
an answer without its request's token is never taken for the answer; a worker that stops answering
is killed and started again. Everything crosses as JSON, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import torch

from ..sandbox.confine import confinement
from ..sandbox.job import ForkServers, Stopped
from ..sandbox.limits import LIMITS, Limits
from ..sandbox.processes import become_subreaper, end_children
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import Lines, decode, encode, parse, protocol_stream, send
from . import get_lab
from .checking import LearnerCodeError, LearnerRaised, check, check_without_running
from .learner_process import load
from .trial import try_in_model

WARM, SERVE = "minitx.labs.learner_process:warm", "minitx.labs.learner_process:serve"


@dataclass
class Answer:
    """What the worker says about one request: the verdict, the result as data, what the code printed."""

    verdict: Verdict
    result: object = None
    output: str = ""

    def to_dict(self) -> dict:
        return {"verdict": self.verdict.to_dict(), "result": self.result, "output": self.output}

    @classmethod
    def from_dict(cls, data: dict) -> "Answer":
        output = data.get("output")
        return cls(Verdict.from_dict(data.get("verdict")), data.get("result"), output if isinstance(output, str) else "")


# -- the worker process ------------------------------------------------------------------------

def run_job(request: dict, servers: ForkServers, limits: Limits) -> Answer:
    """A check, call or demo: the learner's code in a job of its own; for a check, minitx's answers
    and the verdict here."""
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
            return Answer(Verdict(Kind.OK), known.to_dict())
    job, answer = None, None
    try:
        job = servers.spawn(folders, limits=limits)
        job.start()
        if op == "check":
            report = check(lab, source, filename, load=lambda *a: load(job, *a))
            answer = Answer(Verdict(Kind.OK), report.to_dict())
        elif op == "call":
            answer = Answer(Verdict(Kind.OK), encode(load(job, lab, source, filename)(*decode(request["args"]))))
        else:
            load(job, lab, source, filename)
            reply = job.ask({"op": "demo", "request": request["request"], "with": request.get("with") or {}})
            if "learner_error" in reply:
                answer = Answer(Verdict(Kind.UNUSABLE, {"text": reply["learner_error"].get("title", "")}))
            elif "raised" in reply:
                raise LearnerRaised(reply["raised"])
            else:
                answer = Answer(Verdict(Kind.OK), reply.get("result"))
    except LearnerCodeError as error:
        answer = Answer(Verdict(Kind.UNUSABLE, {"text": error.title, "stage": error.stage, "detail": error.detail,
                                                "line": error.line}))
    except LearnerRaised as error:
        answer = Answer(Verdict(Kind.RAISED, {"text": error.memory or error.text}))
    except NotImplementedError:
        answer = Answer(Verdict(Kind.RAISED, {"text": f"NotImplementedError: `{lab.function}` is not written yet."}))
    except Stopped as stop:
        answer = Answer(stop.verdict, stop.found)
    finally:
        output = job.end() if job is not None else ""
    answer.output = output
    return answer


def main() -> None:
    protocol = protocol_stream()
    torch.set_num_threads(1)
    become_subreaper()
    limits = Limits(**json.loads(os.environ.get("MINITX_LABS_LIMITS") or "{}"))
    servers = ForkServers(WARM, SERVE, limits)
    servers.start()                                # every job's process is forked from it: started now
    torch.ones(8, 8) @ torch.ones(8, 8)            # the first operation's one-off costs, paid here
    send(protocol, {"ready": True, "pid": os.getpid(), "sandbox": confinement().name})
    references = {}                                # minitx's own runs of a pretrained model, by prompt
    for line in sys.stdin.buffer:
        request = parse(line)
        try:
            if request is None:
                raise ValueError("a request is a JSON object")
            if request.get("op") == "sandbox":
                answer = Answer(Verdict(Kind.OK), confinement().name)
            elif request.get("op") == "try":          # a pretrained model with minitx's function and the learner's
                ids, new = [int(i) for i in request["ids"]], int(request["max_new_tokens"])
                key = (request["model"], tuple(ids), new, request["lab"] == "top_p")
                result = try_in_model(request["lab"], request["source"], request["model"], ids, new,
                                      request.get("filename"), references.get(key), servers)
                references[key] = result.pop("reference")
                answer = Answer(Verdict(Kind.OK), result, result.pop("output"))
            else:
                answer = run_job(request, servers, limits)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            answer = Answer(Verdict(Kind.RAISED, {"text": f"a bad request: {error}"}))
        end_children(keep=servers.keep())          # whatever a job left behind, before the next one
        servers.start()                            # again, if a job's end took it down
        token = request.get("request_token") if request is not None else None
        send(protocol, {**answer.to_dict(), "request_token": token})


# -- the server's side ---------------------------------------------------------------------------

class LabWorker:
    """The server's handle on the worker process. Thread-safe: requests are served one at a time, in
    the order they came.

        worker = LabWorker()
        answer = worker.request({"op": "check", "lab": "attention", "source": ...})   # an Answer
        worker.close()
    """

    def __init__(self, limits: Limits = LIMITS, start_timeout: float = 120.0, reply_margin: float = 30.0):
        self.limits, self.start_timeout = limits, start_timeout
        self.reply_margin = reply_margin          # seconds past a job's wall limit before the worker counts as stuck
        self._process, self._lines, self.restarts = None, None, 0
        self._turn, self._tickets, self._serving = threading.Condition(), 0, 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @contextlib.contextmanager
    def _in_turn(self):
        """The caller's turn, after every request that came before it."""
        with self._turn:
            ticket, self._tickets = self._tickets, self._tickets + 1
            self._turn.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._turn:
                self._serving += 1
                self._turn.notify_all()

    def start(self) -> None:
        """Start the worker now (it takes a few seconds to import torch), if it is not running."""
        with self._in_turn():
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self.pid is not None:
            return
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "MINITX_LABS_LIMITS": json.dumps(self.limits.to_dict())}
        self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        self._lines = Lines(self._process.stdout, 1 << 30)
        if self._next(self.start_timeout).get("ready") is not True:
            self._kill()
            raise RuntimeError("the lab worker did not start (is minitx importable by this Python?).")

    def _next(self, timeout: float) -> dict:
        """The worker's next line ({} for none in time, or when it has gone)."""
        try:
            return self._lines.get(timeout) or {}
        except queue.Empty:
            return {}

    def request(self, payload: dict, wall_seconds: float | None = None) -> Answer:
        """Send one request and wait for its answer. wall_seconds: how long its job may take, if longer
        than the usual limit (a run of a pretrained model)."""
        with self._in_turn():
            self._ensure_started()
            token = secrets.token_hex(16)          # the answer must carry it: no other process can answer
            line = json.dumps({**payload, "request_token": token}).encode() + b"\n"
            try:
                self._send(line)
            except OSError:                        # it died since the last request: once more, on a new one
                self._restart()
                self._send(line)
            # the worker kills a job at its wall limit; a worker silent for longer is stuck
            deadline = time.monotonic() + (wall_seconds or self.limits.wall_seconds) + self.reply_margin
            while time.monotonic() < deadline:
                answer = self._next(deadline - time.monotonic())
                if answer.get("request_token") == token:
                    return Answer.from_dict(answer)
                if not answer and self.pid is None:
                    break                          # it has gone
            self._restart()
            return Answer(Verdict(Kind.UNRESPONSIVE))

    def _send(self, line: bytes) -> None:
        self._process.stdin.write(line)
        self._process.stdin.flush()

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._ensure_started()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Stop the worker (and any job it has); the next request starts a new one."""
        with self._in_turn():
            self._kill()


if __name__ == "__main__":
    main()
