"""Hostile: processes that try to outlive their check (a fork, a new session, a double fork that
leaves its parent), through the worker as the app runs it and through the command line. After each
job returns, none of them is alive, in both sandbox modes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from minitx.sandbox.verdict import Kind
from tests.hostile_support import MODES, RIGHT, alive_with, check, marker, passed, shared_worker

LINGER = '''
import os

def _linger():
    if os.fork() == 0:                   # a child that leaves the job's session and its parent
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "{mark}"])
        os._exit(0)
    if os.fork() == 0:                   # one that stays in the session
        os.execv("/bin/sleep", ["sleep", "{mark}"])

_linger()
'''


@pytest.fixture(params=MODES)
def worker(request):
    return shared_worker(request.param)


def _wait_gone(mark: str, seconds: float = 2.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while alive_with(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive_with(mark)


def test_nothing_a_passing_check_started_is_alive_after_it(worker):
    mark = marker()
    answer = check(worker, "attention", LINGER.format(mark=mark) + RIGHT["attention"])
    assert passed(answer), answer
    assert _wait_gone(mark, 0.5) == []


def test_nothing_a_job_that_hit_its_time_limit_started_is_alive_after_it(worker):
    mark = marker()
    answer = check(worker, "attention", LINGER.format(mark=mark) + "\ndef attention(*a):\n    while True:\n        pass\n")
    assert answer.verdict.kind in (Kind.CPU_TIME, Kind.TREE_CPU_TIME), answer
    assert _wait_gone(mark, 0.5) == []


def test_the_command_line_check_leaves_nothing_behind(tmp_path):
    shared_worker("isolated")                 # skips (or fails under CI) where bwrap cannot run
    mark = marker()
    (tmp_path / "attention.py").write_text(LINGER.format(mark=mark) + RIGHT["attention"])
    done = subprocess.run([sys.executable, "-m", "minitx.labs", "check", "attention", str(tmp_path / "attention.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(sandbox: isolated)" in done.stdout
    assert _wait_gone(mark, 0.5) == []
