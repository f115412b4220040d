"""What confined code may use, and how a confined process holds itself to it.

A confined process sets its own limits (`apply`) once its trusted start has imported what it needs and
before any learner code runs: processor time (RLIMIT_CPU: an endless loop ends with SIGXCPU), address
space (RLIMIT_AS: a 50 GB tensor fails at once instead of swapping the machine to a halt) and, where
the kernel counts them (any user but root), processes. A whole tree's use is watched from outside
(minitx.sandbox.processes.TreeWatch); the wall clock, by whoever waits for the answer.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    """What one job may use. None: no limit of that kind (a training run's processor time)."""

    cpu_seconds: float | None = 5               # processor time
    wall_seconds: float | None = 10.0           # real time, for a job that waits instead of computing
    memory_bytes: int | None = 2 * 2**30        # memory beyond what the process had when it set its limits
    output_bytes: int = 20_000                  # what the learner's prints may show
    reply_bytes: int = 8 * 2**20                # the answer, pictures included
    processes: int | None = 32                  # processes and threads of its user, where the kernel counts them

    def to_dict(self) -> dict:
        return asdict(self)


LIMITS = Limits()


def address_space() -> int:
    """This process's address space now, in bytes (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def apply(limits: Limits) -> None:
    """Hold this process, and what it starts, to these limits from now on. Each limit the platform
    cannot set is left out (no resource module, no /proc): the watchers outside still hold."""
    try:
        import resource
    except ImportError:
        return
    if limits.cpu_seconds is not None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime + limits.cpu_seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_NPROC, limits.processes)):
        if value is None:
            continue
        try:
            value = address_space() + value if kind == resource.RLIMIT_AS else value
            resource.setrlimit(kind, (value, value))
        except (OSError, ValueError):
            pass
