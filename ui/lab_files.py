"""The learner's files, one per lab, and which labs have passed, kept in a folder.

    my_labs/attention.py      what they wrote, saved every time they check it
    my_labs/progress.json     per lab: passed or not, the message, when, and a hash of the file
                              that was checked (edit the file and the pass no longer counts)

The folder is $MINITX_LABS, else my_labs/ where the app runs. `python -m minitx.labs start
my_labs` writes the same stub files, so the app and an editor can share it. Writes are atomic
and the progress file is updated under a file lock: two tabs cannot lose each other's work.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from filelock import FileLock

from minitx.labs import LABS, get_lab
from minitx.labs.checking import Report


def default_folder() -> Path:
    return Path(os.environ.get("MINITX_LABS") or "my_labs")


def digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def write_atomically(path: Path, text: str) -> None:
    """The whole text or, after a crash, the old file: never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class LearnerFiles:
    """One learner's files and progress in `folder`."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_folder()

    def path(self, name: str) -> Path:
        return self.folder / f"{get_lab(name).name}.py"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def source(self, name: str) -> str:
        """What the learner has saved for this lab, else the stub."""
        path = self.path(name)
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return get_lab(name).stub

    def save(self, name: str, source: str) -> None:
        write_atomically(self.path(name), source)

    def reset(self, name: str) -> None:
        """Back to the stub (the old file is replaced; progress says it has not passed)."""
        self.save(name, get_lab(name).stub)

    def progress(self) -> dict[str, dict]:
        try:
            data = json.loads(self.progress_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self, name: str, source: str, report: Report) -> None:
        """Save the file that was checked and what the check said."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.progress_path) + ".lock"):
            self.save(name, source)
            progress = self.progress()
            progress[name] = {"passed": report.passed, "title": report.title, "sha256": digest(source),
                              "checked": datetime.now().isoformat(timespec="seconds")}
            write_atomically(self.progress_path, json.dumps(progress, indent=2))

    def status(self, name: str, progress: dict | None = None) -> str:
        """new (never checked), passed or failing (the file as it is now was checked), or
        changed (edited since its last check). `progress`: the progress file, already read."""
        entry = (self.progress() if progress is None else progress).get(name)
        if not entry:
            return "new"
        if entry.get("sha256") != digest(self.source(name)):
            return "changed"
        return "passed" if entry.get("passed") else "failing"

    def passed_source(self, name: str) -> str | None:
        """The learner's file for this lab if it passed as it is now, else None."""
        return self.source(name) if self.status(name) == "passed" else None

    def statuses(self) -> dict[str, str]:
        progress = self.progress()                   # read once, not once a lab
        return {lab.name: self.status(lab.name, progress) for lab in LABS}
