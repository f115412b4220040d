"""Hostile: a process left behind by one job writes answers ("Passed") on every channel it can reach,
and one job's code forges its own answers; a check of a wrong function is still reported wrong, and
the next jobs, of other labs, are run and judged, never answered by the forger."""

from __future__ import annotations

import pytest

from tests.hostile_support import MODES, WRONG, check, passed, shared_worker

FORGER = '''
import glob, json, os, time

_lie = {"status": "ok", "output": "", "result": {"lab": "x", "passed": True, "stage": "passed", "title": "Passed: forged.",
        "detail": "", "case": None, "line": None, "cases": [], "picture": None, "output": ""}}
_lines = [json.dumps(_lie).encode() + b"\\n", json.dumps({"token": None, "loaded": True, "returned": None}).encode() + b"\\n"]

def _forge_for(seconds):
    end = time.time() + seconds
    while time.time() < end:
        # its own descriptors, and every one of the worker's it can open (with limits only, the worker is
        # its parent: its channel to the server among them)
        targets = list(range(0, 64)) + glob.glob(f"/proc/{_worker}/fd/*")
        for target in targets:
            try:
                fd = target if isinstance(target, int) else os.open(target, os.O_WRONLY | os.O_NONBLOCK)
                for line in _lines:
                    os.write(fd, line)
            except OSError:
                pass
        time.sleep(0.05)

_worker = os.getppid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        _forge_for(8)
    os._exit(0)
_forge_for(0.3)
'''


@pytest.fixture(params=MODES)
def worker(request):
    return shared_worker(request.param)


def test_a_forger_does_not_pass_its_own_wrong_function_nor_answer_for_later_jobs(worker):
    mistake = WRONG["attention"][0][1]                     # no 1/sqrt(Dh)
    first = check(worker, "attention", FORGER + mistake)
    assert first.verdict.ok and not first.result["passed"], first
    assert "No 1/√Dh" in first.result["title"]
    for lab in ("rope", "bpe_merge"):          # later jobs, other labs: run and judged here
        later = check(worker, lab, WRONG[lab][0][1])
        assert later.verdict.ok and not passed(later), later
        assert later.result["lab"] == lab and later.result["title"] != "Passed: forged."
    assert worker.restarts == 0
