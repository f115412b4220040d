"""A process tree as Linux's /proc shows it: who is below whom, what they use together, how to end them all.

Every part of the sandbox that watches or ends confined processes uses these and nothing else: the
tree (`descendants`), what each uses (`cpu_seconds`; `memory_bytes`, its proportional share, so that
shared pages count once), `kill_tree`, `become_subreaper` (orphans below come back here instead of
escaping to init) and `TreeWatch` (a tree's totals against a budget, from outside).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable


def children_of(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
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


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """Processor time of pid and of the children it has waited for."""
    try:
        return sum(int(x) for x in _stat(pid)[11:15]) / os.sysconf("SC_CLK_TCK")    # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return 0.0


def memory_bytes(pid: int) -> int:
    """The process's share of the memory it uses (PSS), or its resident memory where the kernel has no PSS."""
    with contextlib.suppress(OSError, StopIteration):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def gone(pid: int) -> bool:
    """pid has ended (a zombie, ended and waiting to be reaped, counts as ended)."""
    try:
        return _stat(pid)[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def kill_tree(root: int, wait: float = 2.0) -> None:
    """Kill root, its process group and every process below it (found first, so that none escapes to
    init when its parent dies); reap those that are this process's children, and wait up to `wait`
    seconds until all have ended."""
    below = descendants(root)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)
    for pid in (root, *below):
        kill(pid)
    deadline, left = time.monotonic() + wait, [root, *below]
    while left and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        left = [pid for pid in left if not gone(pid)]
        time.sleep(0.005 if left else 0)


def become_subreaper() -> bool:
    """Orphans of this process's descendants come back to it (Linux), instead of to init."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0      # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def end_children(keep=frozenset()) -> None:
    """Kill every child of this process but those in keep, with all below them, and reap them: what
    jobs left behind (a subreaper's orphans come back as its children)."""
    for pid in children_of(os.getpid()):
        if pid not in keep:
            kill_tree(pid, wait=0)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


@contextlib.contextmanager
def ending_what_it_leaves():
    """Around work that may leave processes behind: this process becomes their subreaper, and
    afterwards every child it did not have before is ended."""
    become_subreaper()
    before = set(children_of(os.getpid()))
    try:
        yield
    finally:
        end_children(keep=before)


class TreeWatch:
    """What the processes under `root` use together beyond what they used at the start, checked every
    `period` seconds from outside: past a budget (None: unbounded) it calls on_exceeded("processor time"
    or "memory", the budget) once and stops. `ready`: an event to wait for before the baseline is
    taken (a training run's first step), else at once."""

    def __init__(self, root: int, cpu_budget: float | None, memory_budget: int | None,
                 on_exceeded: Callable[[str, float], None], period: float, ready: threading.Event | None = None):
        self.root, self.budgets, self.on_exceeded, self.ready = root, (cpu_budget, memory_budget), on_exceeded, ready
        self._stop = threading.Event()
        self._baseline = self._use() if ready is None else None
        threading.Thread(target=self._watch, args=(period,), daemon=True, name=f"minitx-watch-{root}").start()

    def _use(self) -> tuple[float, int]:
        tree = [self.root, *descendants(self.root)]
        return sum(cpu_seconds(p) for p in tree), sum(memory_bytes(p) for p in tree)

    def _watch(self, period: float) -> None:
        while not self._stop.wait(period) and not gone(self.root):
            use = self._use()
            if self._baseline is None:
                self._baseline = use if self.ready.is_set() else None
                continue
            for what, used, before, budget in zip(("processor time", "memory"), use, self._baseline, self.budgets):
                if budget is not None and used - before > budget:
                    return self.on_exceeded(what, budget)

    def stop(self) -> None:
        self._stop.set()
