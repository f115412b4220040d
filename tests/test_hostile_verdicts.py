"""Hostile: each way a learner's code can misbehave ends within seconds with its own verdict
(minitx.sandbox.verdict), through the lab worker as the app uses it, in both confinements; the worker
carries on after each."""

from __future__ import annotations

import time

import pytest

from minitx.sandbox.limits import Limits
from minitx.sandbox.verdict import Kind
from tests.hostile_support import MODES, RIGHT, check, start_worker

ATTENTION = "def attention(q, k, v, mask=None):\n"
CASES = {
    "an endless loop": (ATTENTION + "    while True:\n        pass\n", {Kind.CPU_TIME, Kind.TREE_CPU_TIME}),
    "a sleep": ("import time\n" + ATTENTION + "    time.sleep(60)\n", {Kind.WALL_TIME}),
    "processes that spin together": ("import os\n" + ATTENTION + "    for _ in range(3):\n        if os.fork() == 0:\n"
                                     "            break\n    while True:\n        pass\n",
                                     {Kind.TREE_CPU_TIME, Kind.CPU_TIME}),
    "memory held by many processes": ("import os, time\n" + ATTENTION + "    for _ in range(3):\n"
                                      "        if os.fork() == 0:\n            kept = b'x' * (300 << 20)\n"
                                      "            time.sleep(60)\n    time.sleep(60)\n", {Kind.TREE_MEMORY}),
    "an answer of 2 x 10^8 numbers": ("import torch\n" + ATTENTION + "    return torch.zeros(2 * 10**8, "
                                      "dtype=torch.uint8), None\n", {Kind.ANSWER_TOO_LARGE}),
    "its channel closed": ("import os, time\n" + ATTENTION + "    for fd in os.listdir('/proc/self/fd'):\n"
                           "        if int(fd) > 2:\n            try:\n                os.close(int(fd))\n"
                           "            except OSError:\n                pass\n    time.sleep(60)\n",
                           {Kind.CHANNEL_CLOSED}),
    "os._exit": ("import os\n" + ATTENTION + "    os._exit(3)\n", {Kind.ENDED}),
    "a kill of itself": ("import os, signal\n" + ATTENTION + "    os.kill(os.getpid(), signal.SIGKILL)\n", {Kind.ENDED}),
}
SAYS = {"an answer of 2 x 10^8 numbers": "larger than 8 MB", "its channel closed": "closed the channel",
        "os._exit": "exit code 3", "a kill of itself": "signal SIGKILL", "a sleep": "ran for more than 6 s",
        "memory held by many processes": "memory together"}
LIMITS = Limits(cpu_seconds=1, wall_seconds=6, memory_bytes=2**29)
# each ends once a limit is reached, with a margin for a busy machine: a loop by its processor time, long
# before the wall clock; everything else by the wall clock at the latest
WITHIN = {"an endless loop": 5.0}


@pytest.fixture(scope="module", params=MODES)
def worker(request):
    # the wall clock far behind the processor time: four spinning processes on a busy 2-core machine still
    # reach their 2 s together first
    started = start_worker(request.param, LIMITS)
    yield started
    started.close()


@pytest.mark.parametrize("case", CASES)
def test_each_way_to_misbehave_gets_its_own_verdict_and_the_worker_carries_on(worker, case):
    source, kinds = CASES[case]
    started = time.monotonic()
    answer = check(worker, "attention", source)
    took = time.monotonic() - started
    assert answer.verdict.kind in kinds and answer.verdict.stopped, (case, answer)
    assert took < WITHIN.get(case, LIMITS.wall_seconds + 2), (case, took)
    assert SAYS.get(case, "processor time") in answer.verdict.message, (case, answer.verdict.message)
    after = check(worker, "attention", RIGHT["attention"])
    assert after.verdict.ok and after.result["passed"] and worker.restarts == 0
