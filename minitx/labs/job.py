"""One job of learner code, from the worker's side: a process of its own, used once, then ended
with everything it started.

    worker (trusted: minitx's answers, the comparison, the verdict)
       |  stdin / stdout pipes of this job's process only; every answer carries the job's token
       v
    learner process (`python -m minitx.labs.child`), in bwrap where it runs (`minitx.labs.jail`):
       loads the learner's file, runs the function on the inputs it is sent, answers with outputs

The worker keeps one learner process started ahead of time (`Spares`), so a job does not wait
for Python and torch to start; each is used for one job and ended with it.

What is bounded where:

- the learner's process itself: processor time (RLIMIT_CPU), address space (RLIMIT_AS) and,
  where the kernel counts them (any user but root), its processes (RLIMIT_NPROC);
- the whole job, everything it started included: the wall clock (the worker's deadline), and
  the total processor time and memory (proportional set size) of every process in the job's
  tree, measured by the worker every 0.1 s, which ends the job when either passes its limit
  (cgroups are not used: most desktops do not let a user create one; with limits only, a process
  that left its parent is no longer in the tree, so it escapes this count until the job ends);
- after the job: in the isolated sandbox the job's PID namespace ends with it, so nothing it
  started survives; with limits only, the worker kills the job's process group and session, every
  descendant it can see, and every orphan the job left (the worker is their subreaper on Linux,
  so a process that left its session and its parent still comes back to the worker).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from .checking import JobStopped, LearnerCodeError, LearnerRaised
from .jail import bwrap_argv, isolation
from .sandbox import LIMITS, Limits, decode, encode

CHILD_MODULE = "minitx.labs.child"
WATCH_SECONDS = 0.1
START_TIMEOUT = 90.0


# -- processes on Linux: a tree, its processor time and memory ---------------------------------

def children_of(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    """Every process below pid, children first."""
    out, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def cpu_seconds(pid: int) -> float:
    """Processor time of pid and of the children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")     # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return 0.0


def memory_bytes(pid: int) -> int:
    """The process's share of the memory it uses (PSS: shared pages counted once across processes)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def become_subreaper() -> bool:
    """Orphans of this process's descendants come back to it (Linux), instead of to init."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0      # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_orphans(keep: set[int]) -> None:
    """Kill and reap every child of this process but those in keep: what jobs left behind."""
    for pid in children_of(os.getpid()):
        if pid not in keep:
            for below in descendants(pid):
                kill(below)
            kill(pid)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# -- the learner's process -----------------------------------------------------------------

class LearnerProcess:
    """A learner process, started now and ready once it has imported torch; used for one job."""

    def __init__(self, limits: Limits = LIMITS, read_only: tuple[str, ...] = ()):
        self.limits, self.mode = limits, isolation()
        import minitx

        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": str(Path(minitx.__file__).resolve().parents[1])}
        command = [sys.executable, "-m", CHILD_MODULE]
        if self.mode == "isolated":
            argv = bwrap_argv(read_only=list(read_only))
            for name, value in env.items():
                argv += ["--setenv", name, value]
            command, env = argv + command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("MINITX_")}, **env}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, close_fds=True, start_new_session=True,
                                        cwd="/tmp" if os.path.isdir("/tmp") else None)
        self.answers: queue.Queue = queue.Queue()
        self.output = bytearray()
        threading.Thread(target=self._read_answers, daemon=True).start()
        self._output_reader = threading.Thread(target=self._read_output, daemon=True)
        self._output_reader.start()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_answers(self) -> None:
        with self.process.stdout:
            self._answers_from(self.process.stdout)
        self.answers.put(None)

    def _answers_from(self, stream) -> None:
        while True:
            line = stream.readline(self.limits.reply_bytes + 1)
            if not line:
                break
            if len(line) > self.limits.reply_bytes:
                self.answers.put({"__too_large__": True})
                break
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
            self.answers.put(answer if isinstance(answer, dict) else {"__garbled__": True})

    def _read_output(self) -> None:
        with self.process.stderr as stream:
            for chunk in iter(lambda: stream.read1(65536), b""):
                room = self.limits.output_bytes + 1 - len(self.output)
                if room > 0:
                    self.output += chunk[:room]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        if not self.ready:
            try:
                answer = self.answers.get(timeout=timeout)
            except queue.Empty:
                return False
            self.ready = isinstance(answer, dict) and answer.get("ready") is True
        return self.ready

    def end(self) -> None:
        """Kill it and everything it started that can still be found; reap it."""
        below = descendants(self.pid)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in below:
            kill(pid)
        self.process.kill()
        self.process.wait()
        deadline = time.monotonic() + 2.0          # and reap those that came back to this process (the subreaper)
        while below and time.monotonic() < deadline:
            for pid in below:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            below = [pid for pid in below if os.path.exists(f"/proc/{pid}")]
            if below:
                time.sleep(0.01)
        try:
            self.process.stdin.close()
        except OSError:
            pass
        # stdout and stderr are closed by their reader threads at the end of file (a close from here would
        # wait for a read that a surviving process could keep open)


class Spares:
    """One learner process started ahead of time, so that a job need not wait for one."""

    def __init__(self, limits: Limits = LIMITS):
        self.limits, self.spare = limits, None

    def refill(self) -> None:
        if self.spare is None or self.spare.process.poll() is not None:
            self.spare = LearnerProcess(self.limits)

    def take(self, read_only: tuple[str, ...] = ()) -> LearnerProcess:
        """A ready learner process of its own for one job (a new one where it must see more folders)."""
        if read_only and isolation() == "isolated":
            process = LearnerProcess(self.limits, read_only)
        else:
            self.refill()
            process, self.spare = self.spare, None
        if not process.wait_ready():
            process.end()
            raise JobStopped("The sandbox for your code did not start.")
        return process

    def keep(self) -> set[int]:
        return {self.spare.pid} if self.spare is not None else set()


# -- a job ---------------------------------------------------------------------------------

class Job:
    """One job's conversation with its learner process, under its limits and deadline."""

    def __init__(self, process: LearnerProcess, limits: Limits = LIMITS, wall_seconds: float | None = None):
        self.process, self.limits = process, limits
        self.wall_seconds = wall_seconds or limits.wall_seconds
        self.token = secrets.token_hex(16)
        self.stopped: str | None = None            # why the watcher ended the job
        self.deadline = None
        self._done = threading.Event()

    def start(self) -> None:
        self.deadline = time.monotonic() + self.wall_seconds
        self._baseline = (cpu_seconds(self.process.pid) + sum(cpu_seconds(p) for p in descendants(self.process.pid)),
                          sum(memory_bytes(p) for p in [self.process.pid, *descendants(self.process.pid)]))
        threading.Thread(target=self._watch, daemon=True).start()
        self.ask({"op": "start", "token": self.token,
                  "limits": {"cpu_seconds": self.limits.cpu_seconds, "memory_bytes": self.limits.memory_bytes,
                             "processes": self.limits.processes}}, expect="started")

    def _watch(self) -> None:
        """The whole job's processor time and memory, everything it started included."""
        cpu_budget = self.limits.cpu_seconds + 1.0
        memory_budget = self.limits.memory_bytes
        while not self._done.wait(WATCH_SECONDS):
            tree = [self.process.pid, *descendants(self.process.pid)]
            cpu = sum(cpu_seconds(p) for p in tree) - self._baseline[0]
            memory = sum(memory_bytes(p) for p in tree) - self._baseline[1]
            if cpu > cpu_budget:
                self.stopped = (f"Your code and the processes it started used more than {cpu_budget:g} s of "
                                f"processor time together and were stopped.")
            elif memory > memory_budget:
                self.stopped = (f"Your code and the processes it started used more than "
                                f"{memory_budget / 2**30:g} GiB of memory together and were stopped.")
            if self.stopped:
                self.process.end()
                return

    def ask(self, message: dict, expect: str | None = None) -> dict:
        """Send one message and wait for the answer with this job's token; JobStopped when there is
        none in time (or the process ended, or sent something else)."""
        try:
            self.process.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.process.stdin.flush()
        except (OSError, ValueError):
            raise JobStopped(self._why_ended()) from None
        while True:
            left = self.deadline - time.monotonic()
            try:
                answer = self.process.answers.get(timeout=max(left, 0.0))
            except queue.Empty:
                self.stopped = (f"Your code ran for more than {self.wall_seconds:g} s and was stopped. An endless "
                                f"loop, or waiting for something that never comes?")
                raise JobStopped(self.stopped) from None
            if answer is None:
                raise JobStopped(self._why_ended())
            if answer.get("__too_large__"):
                raise JobStopped(f"The answer was larger than {self.limits.reply_bytes // 2**20} MB.")
            if answer.get("token") != self.token:         # not this job's: never taken for its answer
                continue
            if expect is not None and expect not in answer:
                raise JobStopped("The process running your code answered out of turn.")
            return answer

    def _why_ended(self) -> str:
        if self.stopped:
            return self.stopped
        try:
            code = self.process.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        signal_number = -code if code is not None and code < 0 else code - 128 if code and code > 128 else None
        if signal_number == signal.SIGXCPU:
            return (f"Your code used more than {self.limits.cpu_seconds} s of processor time and was stopped. "
                    f"An endless loop, or far more work than this needs?")
        why = f"signal {signal.Signals(signal_number).name}" if signal_number in signal.valid_signals() \
            else f"exit code {code}"
        return f"The process running your code ended without an answer ({why}): out of memory, or it ended itself."

    def load(self, lab, source: str, filename: str, cases=None) -> "RemoteFunction":
        answer = self.ask({"op": "load", "lab": lab.name, "source": source, "filename": filename})
        if "learner_error" in answer:
            error = answer["learner_error"]
            raise LearnerCodeError(str(error.get("stage", "load")), str(error.get("title", "")),
                                   str(error.get("detail") or ""), error.get("line"))
        if not answer.get("loaded"):
            raise JobStopped("The process running your code answered out of turn.")
        return RemoteFunction(self, cases or [])

    def end(self) -> str:
        """End the job's process and all it started; what the learner's code printed, capped."""
        self._done.set()
        self.process.end()
        self.process._output_reader.join(timeout=0.5)     # the last of what it printed (a survivor may hold the pipe)
        printed = bytes(self.process.output[: self.limits.output_bytes]).decode("utf-8", "replace")
        if len(self.process.output) > self.limits.output_bytes:
            printed += "\n... (cut: the rest of what your code printed is not shown)"
        return printed


class RemoteFunction:
    """The learner's function, as the checker calls it: the arguments go to the learner's process as
    data, what it returned (and the arguments as it left them) comes back as data."""

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
            raise JobStopped("The process running your code sent back something that is not an answer.") from None
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
