"""Hostile: a job that spreads its work over several processes, each under its own limits: together
they may not pass the job's memory or processor time, and the job is stopped saying so."""

from __future__ import annotations

import pytest

from minitx.sandbox.limits import Limits
from minitx.sandbox.verdict import Kind
from tests.hostile_support import check, start_worker

MEMORY = '''
import os, time
import torch

def attention(q, k, v, mask=None):
    for _ in range(3):                    # three processes of 400 MB each, under a 1 GiB job
        if os.fork() == 0:
            block = torch.ones(100 * 2**20)      # 400 MB, touched
            time.sleep(30)
            os._exit(0)
    time.sleep(30)
'''

RELAY = '''
import os

def attention(q, k, v, mask=None):
    for _ in range(4):                    # four processes spinning at once
        if os.fork() == 0:
            while True:
                pass
    while True:
        pass
'''


@pytest.fixture(scope="module")
def workers():                                # the worker's count is the same code in either mode: the isolated one is enough
    # each test forces the path it checks: time enough for memory to be what runs out, and the other way round
    started = {"memory": start_worker("isolated", Limits(cpu_seconds=60, wall_seconds=20.0, memory_bytes=2**30)),
               "time": start_worker("isolated", Limits(cpu_seconds=2, wall_seconds=20.0, memory_bytes=8 * 2**30))}
    yield started
    for worker in started.values():
        worker.close()


def test_memory_spread_over_processes_is_counted_together(workers):
    answer = check(workers["memory"], "attention", MEMORY)
    assert answer.verdict.kind is Kind.TREE_MEMORY and "memory together" in answer.verdict.message, answer


def test_processor_time_spread_over_processes_is_counted_together(workers):
    answer = check(workers["time"], "attention", RELAY)
    assert answer.verdict.kind is Kind.TREE_CPU_TIME, answer
    assert "processor time together" in answer.verdict.message, answer
