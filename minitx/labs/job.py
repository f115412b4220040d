"""One job of learner code, from the worker's side: a process of its own, used once, then ended
with everything it started.

    worker (trusted: minitx's answers, the comparison, the verdict)
       |  stdin / stdout pipes of this job's process only; every answer carries the job's token
       v
    learner process, forked for this job by the zygote (`minitx.labs.zygote`), which runs in
    bwrap where it runs (`minitx.labs.jail`): loads the learner's file, runs the function on the
    inputs it is sent, answers with outputs

The zygote has imported Python's and torch's modules once, so a job's process starts in
milliseconds, fresh: no learner's code ever ran in the process it is forked from.

What is bounded where:

- the learner's process itself: processor time (RLIMIT_CPU), address space (RLIMIT_AS) and,
  where the kernel counts them (any user but root), its processes (RLIMIT_NPROC);
- the whole job, everything it started included: the wall clock (the worker's deadline), and
  the total processor time and memory (proportional set size) of every process in the job's
  tree, measured by the worker every 0.1 s, which ends the job when either passes its limit
  (cgroups are not used: most desktops do not let a user create one; a process that leaves its
  parent comes back to the job's init, a subreaper, so it stays in the tree);
- after the job: in the isolated sandbox the job's PID namespace ends with it, so nothing it
  started survives; with limits only, the job's init (its subreaper) and the worker kill the job's
  process group and session, every descendant they can see, and every orphan the job left (the
  worker is a subreaper too, for a process whose init was killed first).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from .checking import JobStopped, LearnerCodeError, LearnerRaised
from .jail import bwrap_argv, isolation, readable_folders
from .sandbox import LIMITS, Limits, decode, encode

ZYGOTE_MODULE = "minitx.labs.zygote"
FORK_TIMEOUT = 10.0
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


@contextlib.contextmanager
def ending_what_it_leaves():
    """Around work that may leave processes behind: this process becomes their subreaper, and
    afterwards every child it did not have before is ended (its own children stay)."""
    become_subreaper()
    before = set(children_of(os.getpid()))
    try:
        yield
    finally:
        end_orphans(keep=before)


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

def gone(pid: int) -> bool:
    """pid has ended (a zombie, ended and waiting to be reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


class LearnerProcess:
    """A job's learner process as the worker holds it: its keeper's process id (the job's root,
    as this process sees it) and the job's pipes. Used for one job."""

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int, status: int, limits: Limits = LIMITS):
        self.pid, self.limits = pid, limits
        self.stdin = os.fdopen(stdin, "wb")
        self._status, self._closing = status, threading.Lock()
        self.answers: queue.Queue = queue.Queue()
        self.output = bytearray()
        threading.Thread(target=self._read_answers, args=(os.fdopen(stdout, "rb"),), daemon=True).start()
        self._output_reader = threading.Thread(target=self._read_output, args=(os.fdopen(stderr, "rb"),),
                                               daemon=True)
        self._output_reader.start()

    def _read_answers(self, stream) -> None:
        with stream:
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
        self.answers.put(None)

    def _read_output(self, stream) -> None:
        with stream:
            for chunk in iter(lambda: stream.read1(65536), b""):
                room = self.limits.output_bytes + 1 - len(self.output)
                if room > 0:
                    self.output += chunk[:room]

    def returncode(self, timeout: float) -> int | None:
        """How the learner process ended, as subprocess says it (a negative number: a signal), once
        it has; None if it has not within timeout or its keeper was killed."""
        status = self._status
        data, deadline = b"", time.monotonic() + timeout
        try:
            while select.select([status], [], [], max(deadline - time.monotonic(), 0.0))[0]:
                chunk = os.read(status, 64)
                if not chunk:
                    break
                data += chunk
            else:
                return None
        except (OSError, TypeError, ValueError):    # ended meanwhile: the pipe is closed
            return None
        try:
            return int(data)
        except ValueError:
            return None

    def end(self) -> None:
        """Kill the job's keeper, its session and every process below it; wait until they have ended."""
        below = descendants(self.pid)
        for kill_it in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                kill_it()
            except (ProcessLookupError, PermissionError):
                pass
        for pid in below:
            kill(pid)
        deadline = time.monotonic() + 2.0          # reap those that came back to this process (the subreaper)
        left = [self.pid, *below]
        while left and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            left = [pid for pid in left if not gone(pid)]
            if left:
                time.sleep(0.005)
        with self._closing:                        # the watcher and the job may both end it
            status, self._status = self._status, None
            for closing in (self.stdin.close, lambda: status is not None and os.close(status)):
                try:
                    closing()
                except OSError:
                    pass
        # stdout and stderr are closed by their reader threads at the end of file (a close from here would
        # wait for a read that a surviving process could keep open)


def model_folders(path: str) -> list[str]:
    """What a process must read to load the pretrained model at path: the file or folder, and
    minitx's cache of its float32 weights."""
    from ..tokenizer import cache_dir

    cache = cache_dir("pretrained")
    return readable_folders(path) + ([str(cache.resolve())] if cache.is_dir() else [])


class Zygote:
    """The zygote process (`minitx.labs.zygote`), started once, inside bwrap where it runs: it has
    imported torch, and forks a fresh learner process for each job. read_only: more folders its
    jobs may read (a trained run's, for a page drawn with it); model: the pretrained model it loads
    once (a .gguf file or a model folder), which its forks share instead of loading it again."""

    def __init__(self, limits: Limits = LIMITS, read_only: tuple[str, ...] = (), model: str | None = None):
        self.limits, self.read_only, self.model, self.mode = limits, tuple(read_only), model, isolation()
        import minitx
        from ..tokenizer import cache_dir

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)    # each message says who sent it
        # one thread everywhere: a fork copies no thread pool (torch's, OpenBLAS's, the tokenizer's)
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": str(Path(minitx.__file__).resolve().parents[1]),
               "MINITX_CACHE": str(cache_dir("pretrained").parent)}
        # -P: the working folder (the sandbox's /tmp, which every job may write) is not on its module path
        command = [sys.executable, "-P", "-m", ZYGOTE_MODULE, str(theirs.fileno()), self.mode,
                   *([model] if model else [])]
        if self.mode == "isolated":
            argv = bwrap_argv(read_only=[*read_only, *(model_folders(model) if model else [])], env=env)
            command, env = argv + command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("MINITX_")}, **env}
        started = START_TIMEOUT + (120.0 if model else 0.0)      # loading a model the first time: dequantizing it
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env, pass_fds=(theirs.fileno(),),
                                        start_new_session=True, cwd="/tmp" if os.path.isdir("/tmp") else None)
        theirs.close()
        self.control, self.ready, self.start_timeout = mine, False, started

    def alive(self) -> bool:
        return self.process.poll() is None

    def _receive(self, timeout: float) -> tuple[bytes, int | None]:
        """The next message from the zygote or a keeper, and the sender's process id as seen here."""
        self.control.settimeout(timeout)
        message, ancillary, _, _ = self.control.recvmsg(16, socket.CMSG_SPACE(struct.calcsize("3i")))
        pid = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", data[: struct.calcsize("3i")])[0]
        return message, pid

    def spawn(self, limits: Limits | None = None) -> LearnerProcess:
        """A fresh learner process for one job, forked from the zygote."""
        try:
            if not self.ready:
                self.ready = self._receive(self.start_timeout)[0] == b"ready"
            if not self.ready:
                raise OSError("the zygote did not start")
            stdin, stdout, stderr, status = os.pipe(), os.pipe(), os.pipe(), os.pipe()
            theirs = [stdin[0], stdout[1], stderr[1], status[1]]
            try:
                socket.send_fds(self.control, [b"fork"], theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            message, pid = self._receive(FORK_TIMEOUT)
            if message != b"born" or pid is None or pid == self.process.pid:
                raise OSError("the zygote did not fork")
        except OSError:
            self.close()
            raise JobStopped("The sandbox for your code did not start.") from None
        return LearnerProcess(pid, stdin[1], stdout[0], stderr[0], status[0], limits or self.limits)

    def close(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.kill()
        self.process.wait()
        self.control.close()


class Zygotes:
    """The worker's zygotes: the usual one, started ahead of the first job, and up to two more for
    jobs that need more (isolated: folders to read; a pretrained model loaded)."""

    KEEP = 2

    def __init__(self, limits: Limits = LIMITS):
        self.limits = limits
        self.usual: Zygote | None = None
        self.others: dict[tuple, Zygote] = {}           # by (folders, model), the last used last

    def start(self) -> None:
        if self.usual is None or not self.usual.alive():
            if self.usual is not None:
                self.usual.close()
            self.usual = Zygote(self.limits)

    def zygote_for(self, read_only: tuple[str, ...] = (), model: str | None = None) -> Zygote:
        """The zygote whose forks can read read_only too and have model loaded: started now if there
        is none yet (it may start while the caller does something else)."""
        if isolation() != "isolated":
            read_only = ()                 # with limits only, every folder can be read anyway
        if not read_only and model is None:
            self.start()
            return self.usual
        key = (tuple(read_only), model)
        zygote = self.others.pop(key, None)
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.close()
            zygote = Zygote(self.limits, tuple(read_only), model)
        self.others[key] = zygote
        while len(self.others) > self.KEEP:
            self.others.pop(next(iter(self.others))).close()
        return zygote

    def spawn(self, read_only: tuple[str, ...] = (), model: str | None = None,
              limits: Limits | None = None) -> LearnerProcess:
        """A fresh learner process for one job, that can read read_only too and has model loaded."""
        return self.zygote_for(read_only, model).spawn(limits)

    def _all(self) -> list[Zygote]:
        return [z for z in (self.usual, *self.others.values()) if z is not None]

    def keep(self) -> set[int]:
        """The zygotes' own processes (the worker's clean-up after a job leaves them)."""
        return {z.process.pid for z in self._all() if z.alive()}

    def close(self) -> None:
        for zygote in self._all():
            zygote.close()
        self.usual, self.others = None, {}


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
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
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
        code = self.process.returncode(timeout=2)
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
