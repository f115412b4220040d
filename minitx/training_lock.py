"""One training run at a time on this machine, across every minitx server: a lock file.

Each `streamlit run` keeps its own run registry, so two servers (two ports, two
checkouts) would otherwise train at once, each at about half speed. Before a run
starts, its registry takes an exclusive lock on one file (`fcntl.flock`) and
writes in it which run holds it; the other servers read that to say who is
training. The operating system lets go of the lock when the holder closes the
file or dies, so a killed server never leaves a stale lock behind.

    lock = TrainingLock(default_lock_path())
    holder = lock.acquire({"run": "my-run", "pid": os.getpid()})   # None: ours now
    if holder is not None:
        raise ValueError(describe_holder(holder))                   # "run x is training on ..."
    ...
    lock.release()

The app's run registry and the command line (`python -m minitx.train`) both
take it. The file is per user, in the temp folder (MINITX_TRAINING_LOCK chooses another).
Where `fcntl` is missing (Windows), there is no lock: runs are one at a time per
server only.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:            # Windows: no flock
    fcntl = None

LOCK_ENV = "MINITX_TRAINING_LOCK"


def default_lock_path() -> Path:
    """MINITX_TRAINING_LOCK if set, else a file of this user's in the temp folder."""
    chosen = os.environ.get(LOCK_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"minitx-training-{user}.lock"


class TrainingLock:
    """An exclusive, non-blocking lock on one file, with a note of who holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None                      # open while we hold the lock
        self._guard = threading.Lock()         # acquire and release may come from different threads

    @property
    def available(self) -> bool:
        """False where the platform has no flock: acquire() then always succeeds."""
        return fcntl is not None

    @property
    def held(self) -> bool:
        return self._file is not None

    def _open(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a+", encoding="utf-8")
        except OSError as error:
            raise ValueError(f"the training lock {self.path} cannot be opened ({error.strerror}); "
                             f"set {LOCK_ENV} to a file in a folder you can write to.") from None

    def acquire(self, holder: dict) -> dict | None:
        """Take the lock and note `holder` in it: None if it is ours now, else the note of the
        one who holds it (an empty dict if they have not written it yet)."""
        if fcntl is None:
            return None
        with self._guard:
            if self._file is not None:
                raise ValueError(f"this lock on {self.path} is already held: release it first.")
            file = self._open()
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                note = _read_note(file)
                file.close()
                return note
            file.seek(0)
            file.truncate()
            file.write(json.dumps(holder))
            file.flush()
            self._file = file
            return None

    def holder(self) -> dict | None:
        """The note of whoever holds the lock now (us included), or None if nobody does."""
        if fcntl is None:
            return None
        with self._guard:
            if self._file is not None:
                return _read_note(self._file)
            file = self._open()
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_note(file)
            else:
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)
                return None
            finally:
                file.close()

    def release(self) -> None:
        """Let go of the lock if we hold it (the note is wiped first); safe to call twice."""
        with self._guard:
            file, self._file = self._file, None
            if file is None:
                return
            file.seek(0)
            file.truncate()
            file.flush()
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()


def _read_note(file) -> dict:
    file.seek(0)
    try:
        note = json.loads(file.read() or "{}")
    except json.JSONDecodeError:      # written by something else, or half written
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
