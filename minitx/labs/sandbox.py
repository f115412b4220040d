"""Running a learner's code where it can do no harm: never in the server, always under limits.

    server (Streamlit)  --JSON lines, a token per request-->  worker (python -m minitx.labs.worker)
                                                                  |  per job (minitx.labs.job)
                                                                  v
                          learner process, used once: isolated by bubblewrap where it runs
                          (minitx.labs.jail), limits only elsewhere; returns outputs as data

The worker is started once and kept warm (importing torch takes seconds); it never runs a
learner's code itself. It computes minitx's answers and the verdict; the learner's process only
runs the learner's function on the inputs it is sent. Everything crosses as JSON, never pickle:
what comes back from a learner's code is data, not code to run. If the worker itself stops
answering, `LabWorker` kills it and starts another; an answer without its request's token is
never taken for the answer.

This module holds what both sides share (the limits, the JSON encoding of values), the server's
handle on the worker (`LabWorker`), and `run_limited`: a forked child under the same limits, used
for minitx's own run of SmolLM2, where the worker holds the weights a fork shares.
Limits: processor time (RLIMIT_CPU: an endless loop ends with SIGXCPU), address space (RLIMIT_AS:
a 50 GB tensor fails at once with "can't allocate memory"), the wall clock, and for a whole job
its processes' memory and time together (`minitx.labs.job` says what is bounded where).
"""

from __future__ import annotations

import json
import math
import os
import queue
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import torch

WORKER_MODULE = "minitx.labs.worker"


@dataclass(frozen=True)
class Limits:
    """What one job may use."""

    cpu_seconds: int = 5              # processor time
    wall_seconds: float = 10.0        # real time, for a job that waits instead of computing
    memory_bytes: int = 2 * 2**30     # address space beyond what the warm worker already has
    output_bytes: int = 20_000        # what the learner's prints may show
    reply_bytes: int = 8 * 2**20      # the answer, pictures included
    processes: int = 32               # processes (and threads) of the learner's user, where the kernel counts them


LIMITS = Limits()


# -- values across the boundary: JSON, with tensors as shape, dtype and a flat list -----------

DTYPES = {name: getattr(torch, name) for name in ("float32", "float64", "float16", "bfloat16", "int64", "int32",
                                                  "int16", "int8", "uint8", "bool")}


class Opaque:
    """What stands in for a value that is neither data nor a tensor (a learner's own object): its
    type's name and repr, enough for a message to say what it was."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text


def encode(value):
    """Tensors, tuples, dicts and plain values as JSON-ready data (NaN and inf kept, dtypes and
    dict keys too); anything else as its type's name and repr."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        if dtype not in DTYPES:
            return {"__opaque__": f"Tensor of dtype {dtype}", "repr": f"a tensor of dtype {dtype}"}
        data = value.detach().cpu()
        data = data.float() if dtype == "bfloat16" else data
        return {"__tensor__": dtype, "shape": list(value.shape), "data": data.flatten().tolist()}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):         # a numpy number
        try:
            return encode(value.item())
        except Exception:
            pass
    return {"__opaque__": type(value).__name__, "repr": repr(value)[:200]}


def decode(value):
    """The inverse of `encode`; a tensor must have a known dtype and as many values as its shape says."""
    if isinstance(value, dict) and "__tensor__" in value:
        dtype, shape, data = DTYPES.get(value["__tensor__"]), value.get("shape"), value.get("data")
        if dtype is None or not isinstance(shape, list) or not isinstance(data, list) \
                or len(data) != math.prod(shape):
            raise ValueError("a tensor that came back from the sandbox is not well formed.")
        return torch.tensor(data, dtype=dtype).reshape(shape)
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if isinstance(value, dict) and "__dict__" in value:
        return {decode(k): decode(v) for k, v in value["__dict__"]}
    if isinstance(value, dict) and "__opaque__" in value:
        return type(str(value["__opaque__"]), (Opaque,), {})(str(value["__opaque__"]), str(value.get("repr")))
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


# -- the child: fork, limit, run, answer -------------------------------------------------------

def can_fork() -> bool:
    try:
        import resource  # noqa: F401
    except ImportError:
        return False
    return hasattr(os, "fork")


def _address_space() -> int:
    with open("/proc/self/statm") as f:            # Linux: pages of address space in use
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def limit_memory(extra_bytes: int) -> bool:
    """Let this process's address space grow by extra_bytes at most (RLIMIT_AS): past that an
    allocation fails at once, torch's included, instead of swapping the machine to a halt.
    False where the platform cannot (no resource module, no /proc)."""
    try:
        import resource

        memory = _address_space() + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        return True
    except (ImportError, OSError, ValueError):
        return False


def _limit_child(limits: Limits) -> None:
    import resource

    os.setpgid(0, 0)                               # its own process group: killed together
    # one thread: a fork keeps none of the parent's OpenMP threads, and a pool it believes in
    # but no longer has would hang the first parallel operation
    torch.set_num_threads(1)
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime + limits.cpu_seconds)   # a fork starts near 0 s
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    limit_memory(limits.memory_bytes)              # where it cannot, the wall clock still holds


def run_limited(job, limits: Limits = LIMITS) -> dict:
    """Run job() (which returns JSON-ready data) in a forked child under the limits.

    Returns {"status": "ok", "result": ..., "output": what it printed} or
    {"status": "limit", "message": ...}; never raises for what the job does.
    """
    if not can_fork():
        return _run_here(job, limits)
    result_read, result_write = os.pipe()
    output_read, output_write = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:                                   # the child
        status = 0
        try:
            os.close(result_read)
            os.close(output_read)
            os.dup2(output_write, 1)
            os.dup2(output_write, 2)
            # nothing of the worker's but these two pipes: not its channel to the server, above all
            os.closerange(3, result_write)
            os.closerange(result_write + 1, 65536)
            # print() writes to whatever sys.stdout is (a test runner replaces it): the pipe, here
            sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
            _limit_child(limits)
            try:
                answer = {"status": "ok", "result": job()}
            except BaseException as error:       # what the job itself did not catch
                answer = {"status": "error", "message": f"{type(error).__name__}: {error}"[:2000]}
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            data = json.dumps(answer).encode()
            with os.fdopen(result_write, "wb") as out:
                out.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(result_write)
    os.close(output_write)
    return _collect(pid, result_read, output_read, limits)


def _collect(pid: int, result_read: int, output_read: int, limits: Limits) -> dict:
    """Read the child's answer and output until it exits or its time is up; then reap it."""
    chunks, output, too_much = [], bytearray(), False
    deadline = time.monotonic() + limits.wall_seconds
    open_fds, timed_out = {result_read, output_read}, False
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(list(open_fds), [], [], left)
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    open_fds.discard(fd)
                elif fd == result_read:
                    chunks.append(data)
                    if sum(map(len, chunks)) > limits.reply_bytes:
                        too_much = True
                        open_fds.clear()
                elif len(output) < limits.output_bytes + 1:
                    output += data[: limits.output_bytes + 1 - len(output)]
    finally:
        for fd in (result_read, output_read):
            os.close(fd)
        for kill in (lambda: os.killpg(pid, signal.SIGKILL),    # the child, and anything it started
                     lambda: os.kill(pid, signal.SIGKILL)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        _, status = os.waitpid(pid, 0)
    printed = output[: limits.output_bytes].decode("utf-8", "replace")
    if len(output) > limits.output_bytes:
        printed += "\n... (cut: the rest of what your code printed is not shown)"
    if timed_out:
        return {"status": "limit", "output": printed,
                "message": f"Your code ran for more than {limits.wall_seconds:g} s and was stopped. An endless "
                           f"loop, or waiting for something that never comes?"}
    if too_much:
        return {"status": "limit", "output": printed,
                "message": f"The answer was larger than {limits.reply_bytes // 2**20} MB."}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        return {"status": "limit", "output": printed,
                "message": f"Your code used more than {limits.cpu_seconds} s of processor time and was stopped. "
                           f"An endless loop, or far more work than this needs?"}
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        why = f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status) else \
            f"exit code {os.WEXITSTATUS(status)}"
        return {"status": "limit", "output": printed,
                "message": f"The process running your code ended without an answer ({why}): out of memory, "
                           f"or it ended itself."}
    answer["output"] = printed
    return answer


def _run_here(job, limits: Limits) -> dict:
    """No fork on this platform: the worker runs the job itself (the server's timeout still holds)."""
    try:
        return {"status": "ok", "result": job(), "output": ""}
    except BaseException as error:
        return {"status": "error", "message": f"{type(error).__name__}: {error}"[:2000], "output": ""}


# -- the server's side: one warm worker, restarted when it stops answering --------------------

class WorkerError(RuntimeError):
    """The worker could not be started or did not answer."""


class LabWorker:
    """The server's handle on the worker process. One request at a time; thread-safe.

        worker = LabWorker()
        answer = worker.request({"op": "check", "lab": "attention", "source": ...})
        worker.close()
    """

    def __init__(self, limits: Limits = LIMITS, start_timeout: float = 120.0, reply_margin: float = 30.0):
        self.limits = limits
        self.start_timeout = start_timeout
        self.reply_margin = reply_margin          # seconds past a job's wall limit before the worker counts as stuck
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self) -> None:
        """Start the worker now (it takes a few seconds to import torch), if it is not running."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "MINITX_LABS_LIMITS": json.dumps(self.limits.__dict__)}
        self._lines = queue.Queue()
        self._process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        threading.Thread(target=self._read, args=(self._process, self._lines), daemon=True,
                         name="minitx-lab-worker-reader").start()
        ready = self._next_line(self.start_timeout)
        if ready is None or ready.get("ready") is not True:
            self._kill()
            raise WorkerError("the lab worker did not start (is minitx importable by this Python?).")

    @staticmethod
    def _read(process: subprocess.Popen, lines: queue.Queue) -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)                            # the worker is gone

    def _next_line(self, timeout: float) -> dict | None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            return None
        try:
            answer = json.loads(line)
        except ValueError:
            return {}                              # not an answer (and so not this request's)
        return answer if isinstance(answer, dict) else {}

    def request(self, payload: dict, wall_seconds: float | None = None) -> dict:
        """Send one job and wait for its answer: {"status": "ok" | "error" | "limit", ...}. wall_seconds:
        how long the job may take, if longer than the usual limit (a run of a pretrained model)."""
        with self._lock:
            self._ensure_started()
            token = secrets.token_hex(16)          # the answer must carry it: no other process can answer
            line = json.dumps({**payload, "request_token": token}).encode() + b"\n"
            try:
                self._send(line)
            except OSError:                        # it died since the last job: once more, on a new one
                self._kill()
                self.restarts += 1
                self._ensure_started()
                self._send(line)
            # the worker kills a child at wall_seconds; a worker silent for longer is stuck
            deadline = time.monotonic() + (wall_seconds or self.limits.wall_seconds) + self.reply_margin
            answer = self._next_line(deadline - time.monotonic())
            while answer is not None and answer.pop("request_token", None) != token:
                answer = self._next_line(max(deadline - time.monotonic(), 0.0))     # a forged line: not the answer
            if answer is None:
                self._kill()
                self.restarts += 1
                return {"status": "limit", "output": "",
                        "message": "The process running your code stopped answering and was started again."}
            return answer

    def _send(self, line: bytes) -> None:
        self._process.stdin.write(line)
        self._process.stdin.flush()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (and any child it has); the next request starts a new one."""
        with self._lock:
            self._kill()
