"""The run registry: real background runs on IMDB, in worker processes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from minitx.checkpoint import load_run, run_folders
from minitx.config import ModelConfig, TrainConfig
from minitx.labs.training_run import LearnerCodeLauncher
from minitx.launch import WORKER_NICENESS
from minitx.runs import RunBusyError, RunRegistry, format_duration
from tests.lab_sources import NAN_FROM_THE_THIRD_CALL

TINY_MODEL = ModelConfig(d_model=32, n_heads=2, n_kv_heads=1, n_layers=1, d_ff=64, max_len=64)
TINY_TRAIN = TrainConfig(train_size=400, test_size=200, vocab_size=2000, epochs=2, batch_size=32,
                         lr=3e-3, threads=1)
# slow enough steps (tens of ms) that "within one step" can be told apart from "at the end"
SLOW_MODEL = ModelConfig(d_model=128, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=256, max_len=256)
SLOW_TRAIN = TrainConfig(train_size=2000, test_size=200, vocab_size=4000, epochs=3, batch_size=32,
                         threads=1)
ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate, registry, run_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = registry.snapshot(run_id)
        if predicate(snap):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"timed out; last snapshot: {registry.snapshot(run_id)}")


@pytest.fixture
def registry(imdb, tmp_path):
    reg = RunRegistry(tmp_path / "checkpoints", launcher=LearnerCodeLauncher())     # as the app makes it
    yield reg
    reg.shutdown(timeout=60)


def test_start_progress_finished_and_saved(registry):
    run_id = registry.start(TINY_MODEL, TINY_TRAIN, name="first")
    first = registry.snapshot(run_id)
    assert first.status == "queued" and first.step == 0 and first.active
    running = wait_for(lambda s: s.status == "running" and s.step > 0, registry, run_id)
    assert 0 < running.progress <= 1 and running.total_steps == 24   # ceil(360 / 32) * 2
    final = registry.wait(run_id, timeout=120)
    assert final.status == "finished" and final.reason is None and not final.active
    assert final.step == final.total_steps == len(final.steps)
    assert [e["step"] for e in final.steps] == list(range(1, 25))
    assert len(final.evals) == 2 and final.eta_seconds is None
    chosen = [e for e in final.evals if e["step"] == final.summary["best_step"]]
    assert final.summary["test_accuracy"] == chosen[0]["test_accuracy"]
    saved = load_run(final.checkpoint)
    assert Path(final.checkpoint).name == "first" and saved.metrics["status"] == "finished"
    assert saved.metrics["attention_snapshots"]["steps"][0] == 0


def test_a_running_run_reports_eta_and_speed_trains_below_the_server_and_stops_within_one_step(registry):
    run_id = registry.start(SLOW_MODEL, SLOW_TRAIN, name="stopped-early")
    snap = wait_for(lambda s: s.status == "running" and s.step >= 5, registry, run_id)
    assert snap.eta_seconds is not None and snap.eta_seconds > 0
    assert snap.tokens_per_second > 0 and snap.lr > 0 and snap.epoch == 1
    worker = registry._runs[run_id].process.pid       # a page the learner opens gets the CPU first
    assert os.getpriority(os.PRIO_PROCESS, worker) == os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS
    seen = registry.snapshot(run_id).step
    registry.stop(run_id)
    assert registry.snapshot(run_id).status == "stopping"
    final = registry.wait(run_id, timeout=120)
    assert final.status == "stopped" and "stopped by request" in final.reason
    # the step in flight when Stop came may finish, plus one whose event was still on its way
    assert seen <= final.step <= seen + 2 < final.total_steps
    assert load_run(final.checkpoint).metrics["status"] == "stopped"


def test_a_second_start_here_or_in_a_second_server_is_refused_while_a_run_trains(registry, tmp_path):
    """One run at a time: in this registry, and in another (another server) through the
    machine's training lock (conftest: one per test)."""
    other = RunRegistry(tmp_path / "other-checkpoints")
    try:
        assert other.busy_reason() is None
        run_id = registry.start(TINY_MODEL, TINY_TRAIN, name="first-server")
        with pytest.raises(RunBusyError, match="first-server.*only one run trains at a time"):
            registry.start(TINY_MODEL, TINY_TRAIN, name="second")
        assert registry.run_ids() == [run_id]
        assert other.active() is None          # not its run: it only knows it from the lock
        busy = other.busy_reason()
        assert busy.startswith("run first-server is training on this machine")
        assert f"minitx process {os.getpid()}" in busy and str(registry.checkpoint_dir.resolve()) in busy
        with pytest.raises(RunBusyError, match="first-server.*only one run trains at a time"):
            other.start(TINY_MODEL, TINY_TRAIN, name="second-server")
        assert other.run_ids() == []
        assert registry.wait(run_id, timeout=120).status == "finished"
        assert other.busy_reason() is None     # the end let go of the lock
        second = other.start(TINY_MODEL, TINY_TRAIN, name="second-server")
        with pytest.raises(RunBusyError, match="second-server"):   # and now the other way round
            registry.start(TINY_MODEL, TINY_TRAIN, name="third")
        assert other.wait(second, timeout=120).status == "finished"
    finally:
        other.shutdown(timeout=60)


def test_nan_loss_fails_with_the_reason_saves_nothing_and_frees_the_machine(registry, monkeypatch):
    # a learner's attention that turns NaN on its third call: the NaN is forced, on any processor
    run_id = registry.start(TINY_MODEL, TINY_TRAIN, name="nan", learner_code={"attention": NAN_FROM_THE_THIRD_CALL})
    final = registry.wait(run_id, timeout=120)
    assert final.status == "failed"
    assert "loss became nan" in final.reason and "lower the learning rate" in final.reason
    assert final.checkpoint is None and run_folders(registry.checkpoint_dir) == []
    assert registry.training_lock.holder() is None

    def no_worker():
        raise OSError("too many open files")
    monkeypatch.setattr(registry.launcher.local.context, "Queue", no_worker)    # fails before the run exists
    with pytest.raises(OSError, match="too many open files"):
        registry.start(TINY_MODEL, TINY_TRAIN, name="no-worker")
    assert registry.training_lock.holder() is None and registry.active() is None


def test_an_exception_in_the_worker_ends_as_failed_with_the_reason(registry, monkeypatch):
    monkeypatch.setenv("MINITX_IMDB", "/nonexistent/imdb")     # the spawned worker inherits it
    run_id = registry.start(TINY_MODEL, TINY_TRAIN)
    final = registry.wait(run_id, timeout=120)
    assert final.status == "failed" and "IMDB" in final.reason


def test_a_killed_worker_ends_as_failed_and_leaves_no_half_run(registry):
    run_id = registry.start(SLOW_MODEL, SLOW_TRAIN, name="killed")
    wait_for(lambda s: s.step >= 2, registry, run_id)
    registry._runs[run_id].process.kill()
    final = registry.wait(run_id, timeout=30)
    assert final.status == "failed" and "ended unexpectedly" in final.reason
    assert run_folders(registry.checkpoint_dir) == []


def test_shutdown_kills_a_worker_that_does_not_stop_and_it_is_reaped(registry):
    run_id = registry.start(SLOW_MODEL, SLOW_TRAIN, name="deaf")
    wait_for(lambda s: s.step > 0, registry, run_id)
    run = registry._runs[run_id]
    run.process.stop_event = threading.Event()         # Stop no longer reaches the worker
    started = time.monotonic()
    registry.shutdown(timeout=2)
    assert time.monotonic() - started < 15
    assert run.process.exitcode == -signal.SIGKILL             # killed, and its status read
    assert registry.snapshot(run_id).status == "failed" and registry.training_lock.holder() is None


def test_stale_half_saves_are_cleaned_and_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / ".saving-old-x1", tmp_path / ".saving-new-x2"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    registry = RunRegistry(tmp_path)
    assert registry.cleaned == [stale.name]
    assert not stale.exists() and fresh.exists()      # a save in progress elsewhere is left alone


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b", "..", ".hidden", "a b", "név",
                                  "x" * 101, "run\n", "C:\\x"])
def test_hostile_run_names_are_rejected_before_anything_starts(tmp_path, name):
    registry = RunRegistry(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="not allowed"):
        registry.start(TINY_MODEL, TINY_TRAIN, name=name)
    assert registry.run_ids() == [] and registry.active() is None


def test_an_existing_run_name_is_refused_up_front(tmp_path):
    (tmp_path / "taken").mkdir()
    registry = RunRegistry(tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        registry.start(TINY_MODEL, TINY_TRAIN, name="taken")


def test_an_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no run with id"):
        RunRegistry(tmp_path).snapshot("run-9")


SERVER = textwrap.dedent("""
    import os, sys, time
    from minitx.config import ModelConfig, TrainConfig
    from minitx.runs import RunRegistry
    if __name__ == "__main__":
        reg = RunRegistry(sys.argv[1])
        run_id = reg.start(ModelConfig(d_model=128, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=256,
                                       max_len=256),
                           TrainConfig(train_size=400, test_size=100, vocab_size=2000, epochs=20,
                                       threads=1), name="orphan-test")
        while reg.snapshot(run_id).step < 2:
            time.sleep(0.05)
        print(reg._runs[run_id].process.pid, flush=True)
        if sys.argv[2] == "exit":
            sys.exit(0)           # a normal exit: the registry's atexit stops and joins the worker
        time.sleep(600)           # waits to be killed
""")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see processes")
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_no_worker_outlives_its_server(imdb, tmp_path, how):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # its stderr to a file: a killed server's multiprocessing resource tracker outlives it, unlinks
    # the semaphores of its queues and events, and warns that they "appear to be leaked"
    with open(tmp_path / "server-stderr.log", "w") as stderr:
        server = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ck"), how],
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    worker_pid = int(server.stdout.readline())
    assert _alive(worker_pid)
    if how == "kill":
        server.send_signal(signal.SIGKILL)        # no atexit: the worker must notice on its own
    server.wait(timeout=120)
    deadline = time.monotonic() + 60
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker_pid)
    if how == "exit":                             # its queues and events were let go of, too
        assert "leaked" not in (tmp_path / "server-stderr.log").read_text()
    # either way the worker stopped after its step and saved the run whole
    saved = load_run(tmp_path / "ck" / "orphan-test")
    assert saved.metrics["status"] == "stopped"


def test_format_duration():
    assert format_duration(None) == "—"
    assert format_duration(65.4) == "1:05"
    assert format_duration(3723) == "1:02:03"
