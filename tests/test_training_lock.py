"""The machine's training lock: one holder at a time, its note readable, nothing stale."""

import getpass
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from minitx.training_lock import LOCK_ENV, TrainingLock, default_lock_path

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path):
    path = tmp_path / "training.lock"
    first, second = TrainingLock(path), TrainingLock(path)
    assert first.acquire({"run": "first-run", "pid": 11}) is None and first.held
    assert second.acquire({"run": "second-run"}) == {"run": "first-run", "pid": 11}
    assert not second.held
    assert second.holder() == first.holder() == {"run": "first-run", "pid": 11}
    with pytest.raises(ValueError, match="already held"):
        first.acquire({"run": "again"})


def test_release_frees_the_lock_and_wipes_the_note(tmp_path):
    path = tmp_path / "training.lock"
    first, second = TrainingLock(path), TrainingLock(path)
    first.acquire({"run": "first-run"})
    first.release()
    first.release()                                  # twice is fine
    assert not first.held and not first.note_path.exists()
    assert second.holder() is None
    assert second.acquire({"run": "second-run"}) is None
    assert first.holder() == {"run": "second-run"}
    second.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "training.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, sys, time
            from minitx.training_lock import TrainingLock
            lock = TrainingLock({str(path)!r})
            assert lock.acquire({{"run": "doomed", "pid": os.getpid()}}) is None
            print("held", flush=True)
            time.sleep(120)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        ours = TrainingLock(path)
        assert ours.acquire({"run": "mine"}) == {"run": "doomed", "pid": holder.pid}
        holder.send_signal(signal.SIGKILL)            # no release, no cleanup
        holder.wait(10)
        assert ours.acquire({"run": "mine"}) is None   # the kernel let go of it
        ours.release()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_note_that_is_not_ours_reads_as_unknown(tmp_path):
    path = tmp_path / "training.lock"
    first = TrainingLock(path)
    first.acquire({"run": "x"})
    first.note_path.write_text("not json", encoding="utf-8")   # something else wrote in it
    assert TrainingLock(path).acquire({"run": "y"}) == {}
    first.release()


def test_a_lock_in_a_folder_that_cannot_exist_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=f"cannot be opened.*{LOCK_ENV}"):
        TrainingLock(blocker / "training.lock").acquire({"run": "x"})


def test_a_note_left_by_a_dead_holder_is_not_read_once_the_lock_is_free(tmp_path):
    lock = TrainingLock(tmp_path / "training.lock")
    lock.note_path.write_text('{"run": "long-gone"}', encoding="utf-8")
    assert lock.holder() is None
    assert lock.acquire({"run": "mine"}) is None and lock.holder() == {"run": "mine"}
    lock.release()


def test_the_default_lock_is_this_users_in_the_temp_folder_unless_chosen(monkeypatch, tmp_path):
    monkeypatch.delenv(LOCK_ENV, raising=False)
    path = default_lock_path()
    assert path.parent == Path(tempfile.gettempdir()) and getpass.getuser() in path.name
    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "mine.lock"))
    assert default_lock_path() == tmp_path / "mine.lock"
