"""One way to start code we do not trust: a confinement starts it and hands back a handle, `Confined`.

    process = confinement().start_python("minitx.labs.training_run", read_only=[data], writable=[staging])
    process.poll(); process.wait(5); process.kill(Verdict(Kind.WALL_TIME, ...)); process.verdict

The handle is modelled on `subprocess.Popen`, as jupyter_client's kernel provisioner is: `poll`,
`wait`, `kill`, and a typed `verdict` (minitx.sandbox.verdict), why this side ended it. A job forked
by a fork server (minitx.sandbox.job) is the same kind of handle. Two confinements, chosen in one place,
`confinement()`: `Isolated` (bubblewrap namespaces, where bwrap runs) and `LimitsOnly` (a session of its
own, limits, and everything it starts ended with it); docs/sandbox.md says what each covers.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import minitx

from ..tokenizer import cache_dir
from . import bubblewrap
from .limits import Limits
from .processes import TreeWatch, kill_tree
from .verdict import Kind, Verdict

FORCE_SETTING = "MINITX_LABS_SANDBOX"      # "limits" turns the isolated sandbox off (tests of that mode)
PIPE = subprocess.PIPE


class Confined:
    """A confined process or job: poll, wait, kill and the verdict."""

    def __init__(self, pid: int):
        self.pid, self.verdict, self._watch, self._lock = pid, None, None, threading.Lock()

    def poll(self) -> int | None:
        """Its exit status once it has ended (negative: the signal that ended it), else None."""
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        raise NotImplementedError

    def kill(self, verdict: Verdict | None = None) -> None:
        """End it and everything it started; `verdict`: why (the first reason given is the one kept)."""
        with self._lock:
            self.verdict = self.verdict or verdict
        if self._watch is not None:
            self._watch.stop()
        kill_tree(self.pid)

    def watch(self, limits: Limits, period: float, ready: threading.Event | None = None) -> None:
        """From now on, end it once its processes together pass the limits' memory, or processor time
        with a second's grace (each process alone is held to it exactly)."""
        def exceeded(what: str, budget: float) -> None:
            self.kill(Verdict(Kind.TREE_MEMORY, {"limit_gib": round(budget / 2**30, 2)}) if what == "memory"
                      else Verdict(Kind.TREE_CPU_TIME, {"seconds": budget}))

        cpu = None if limits.cpu_seconds is None else limits.cpu_seconds + 1.0
        self._watch = TreeWatch(self.pid, cpu, limits.memory_bytes, exceeded, period, ready)


class ConfinedProcess(Confined):
    """A process a confinement started, with its Popen's pipes."""

    def __init__(self, popen: subprocess.Popen):
        super().__init__(popen.pid)
        self.popen, self.stdin, self.stdout, self.stderr = popen, popen.stdin, popen.stdout, popen.stderr

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, verdict: Verdict | None = None) -> None:
        super().kill(verdict)
        self.popen.wait()


class Confinement:
    """Where confined code runs. `start` runs argv with these folders readable (and writable), this
    environment, a /tmp of tmp_bytes; as_pid_1: the command is its namespace's first process."""

    name, isolates_jobs = "", False          # isolates_jobs: a fork server's jobs get namespaces of their own

    def start(self, argv: list[str], *, read_only=(), writable=(), env: dict | None = None,
              tmp_bytes: int = bubblewrap.TMP_BYTES, as_pid_1: bool = True, pass_fds=(),
              stdin=PIPE, stdout=PIPE, stderr=PIPE) -> ConfinedProcess:
        raise NotImplementedError

    def start_python(self, module: str, args=(), *, env: dict | None = None, **options) -> ConfinedProcess:
        """`python -P -m module args`, confined: one thread (a fork copies no thread pool), minitx importable,
        minitx's cache readable, no working folder on the module path."""
        cache = cache_dir("pretrained").parent
        settings = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": str(Path(minitx.__file__).resolve().parents[1]), "MINITX_CACHE": str(cache),
                    **(env or {})}
        if cache.is_dir():
            options["read_only"] = [*options.get("read_only", ()), str(cache.resolve())]
        return self.start([sys.executable, "-P", "-m", module, *args], env=settings, **options)


class Isolated(Confinement):
    name, isolates_jobs = "isolated", True

    def start(self, argv, *, read_only=(), writable=(), env=None, tmp_bytes=bubblewrap.TMP_BYTES, as_pid_1=True,
              pass_fds=(), stdin=PIPE, stdout=PIPE, stderr=PIPE):
        read, write = os.pipe()                 # bwrap reads its options here: no command line shows them
        os.write(write, b"".join(a.encode() + b"\0" for a in bubblewrap.arguments(read_only, writable, tmp_bytes,
                                                                                 env, as_pid_1)))
        os.close(write)
        try:
            popen = subprocess.Popen([bubblewrap.binary(), "--args", str(read), *argv], stdin=stdin, stdout=stdout,
                                     stderr=stderr, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                     pass_fds=(read, *pass_fds), start_new_session=True, cwd="/")
        finally:
            os.close(read)
        return ConfinedProcess(popen)


class LimitsOnly(Confinement):
    name = "limits only"

    def start(self, argv, *, read_only=(), writable=(), env=None, tmp_bytes=0, as_pid_1=True, pass_fds=(),
              stdin=PIPE, stdout=PIPE, stderr=PIPE):
        mine = {k: v for k, v in os.environ.items() if not k.startswith("MINITX_")}
        return ConfinedProcess(subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr,
                                                env={**mine, **(env or {})}, pass_fds=tuple(pass_fds),
                                                start_new_session=True, cwd="/"))


@functools.lru_cache(maxsize=1)
def confinement() -> Confinement:
    """Isolated where bwrap runs here (tried once: a user namespace may be refused), else LimitsOnly."""
    if os.environ.get(FORCE_SETTING) == "limits" or not sys.platform.startswith("linux") or not bubblewrap.binary():
        return LimitsOnly()
    try:
        tried = Isolated().start([sys.executable, "-c", "import os; print(os.getuid())"], stdin=subprocess.DEVNULL)
        out, _ = tried.popen.communicate(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return LimitsOnly()
    return Isolated() if tried.popen.returncode == 0 and out.strip() == str(bubblewrap.NOBODY).encode() \
        else LimitsOnly()
