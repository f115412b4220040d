"""One training run at a time on this machine, across every minitx server and terminal.

Each `streamlit run` has its own run registry, so two servers (or a server and
`python -m minitx.train`) would otherwise train at once, each at half speed.
Before a run starts, its owner takes an exclusive lock on one file with
`filelock` (flock on Unix, LockFileEx on Windows) and writes a note beside it
saying which run holds it, so the others can name it. The operating system lets
go of the lock when its holder dies, so a killed server leaves no stale lock;
a note left behind is only read while the lock is held.

    lock = TrainingLock(default_lock_path())
    holder = lock.acquire({"run": "my-run", "pid": os.getpid()})   # None: ours now
    if holder is not None:
        raise ValueError(describe_holder(holder))                   # "run x is training on ..."
    ...
    lock.release()

The file is per user, in the temp folder; MINITX_TRAINING_LOCK chooses another.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_ENV = "MINITX_TRAINING_LOCK"


def default_lock_path() -> Path:
    """MINITX_TRAINING_LOCK if set, else a file of this user's in the temp folder."""
    chosen = os.environ.get(LOCK_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    return Path(tempfile.gettempdir()) / f"minitx-training-{getpass.getuser()}.lock"


class TrainingLock:
    """An exclusive, non-blocking lock on one file, with a note (a JSON file beside it) of who holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.note_path = self.path.with_name(self.path.name + ".json")
        # thread_local=False: a run's registry takes it in one thread and lets go in another
        self._lock = FileLock(str(self.path), timeout=0, thread_local=False)
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def _try(self) -> bool:
        """Take the lock if it is free; True if we did."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            return False
        except OSError as error:
            raise ValueError(f"the training lock {self.path} cannot be opened ({error.strerror or error}); "
                             f"set {LOCK_ENV} to a file in a folder you can write to.") from None
        return True

    def acquire(self, holder: dict) -> dict | None:
        """Take the lock and note `holder`: None if it is ours now, else the note of whoever holds
        it (an empty dict if they have not written it yet)."""
        with self._guard:
            if self.held:
                raise ValueError(f"this lock on {self.path} is already held: release it first.")
            if not self._try():
                return self._read_note()
            self.note_path.write_text(json.dumps(holder), encoding="utf-8")
            return None

    def holder(self) -> dict | None:
        """The note of whoever holds the lock now (us included), or None if nobody does."""
        with self._guard:
            if self.held:
                return self._read_note()
            if self._try():
                self._lock.release()
                return None
            return self._read_note()

    def release(self) -> None:
        """Let go of the lock if we hold it (the note goes first); safe to call twice."""
        with self._guard:
            if not self.held:
                return
            self.note_path.unlink(missing_ok=True)
            self._lock.release()

    def _read_note(self) -> dict:
        try:
            note = json.loads(self.note_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):        # not written yet, or written by something else
            return {}
        return note if isinstance(note, dict) else {}


def describe_holder(holder: dict) -> str:
    """Why a run may not start while `holder` (a lock note) trains: which run, where, since when.
    Notes may have run, pid, started (seconds since the epoch), checkpoints and by (who runs it)."""
    who = f"run {holder['run']}" if holder.get("run") else "a run"
    by = holder.get("by") or "minitx"
    where = [f"{by} process {holder['pid']}" if holder.get("pid") else f"another {by} process"]
    if isinstance(holder.get("started"), (int, float)):
        where.append(f"since {time.strftime('%H:%M', time.localtime(holder['started']))}")
    if holder.get("checkpoints"):
        where.append(f"saving to {holder['checkpoints']}")
    return (f"{who} is training on this machine ({', '.join(where)}); only one run trains at a "
            f"time: stop it there or wait for it to finish.")
