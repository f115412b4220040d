"""A training run with the learner's code in it ("train with my attention"), confined, and the app's launcher.

    server: RunRegistry(launcher=LearnerCodeLauncher())        confined (minitx.sandbox.confine)
      a private staging folder, .saving-learner-*/  --stdin: the job, then "stop"-->  python -m minitx.labs.training_run
      the data and minitx's cache, read-only                                         the learner's functions at the
      <-- stdout: one JSON event per line (phase, step, eval, end) --                model's swap points; it saves
      checks each event, then the saved run (plain files only), moves it into place   into the staging folder

The learner's code never writes in the checkpoints folder; events that are not well formed are dropped;
the run's processes together may use LEARNER_RUN_MEMORY more than at the first step; a Stop not obeyed
within STOP_GRACE seconds (the learner's function does not return) ends it unsaved; it ends, unsaved,
with the server. docs/sandbox.md says what each confinement covers.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import stat
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from ..checkpoint import put_in_place
from ..data import imdb_source
from ..launch import LocalLauncher, RunJob, RunProcess, end_event, train_job
from ..sandbox.bubblewrap import readable_folders
from ..sandbox.confine import Confinement, confinement
from ..sandbox.limits import Limits, apply
from ..sandbox.processes import ending_what_it_leaves
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import parse, protocol_stream, send
from . import get_lab
from .checking import load_function
from .swap_in import SWAPPABLE, swaps_for

LEARNER_RUN_MEMORY = 8 * 2**30           # what a run with a learner's code may use beyond its first step
STOP_GRACE = 30.0                        # seconds a run with a learner's code has to stop before it is killed
MESSAGE_BYTES = 1 << 20                  # one event, a line of JSON
MESSAGES_BYTES = 64 << 20                # all of a run's events
TMP_BYTES = 2 * 2**30                    # its /tmp holds the data's Arrow files, rebuilt there for each run
WHOLE, NUMBER = (int,), (int, float)
EVENT_FIELDS = {"phase": {"phase": (str,)}, "eval": {}, "end": {"status": (str,)},
                "step": {"step": WHOLE, "total_steps": WHOLE, "epoch": WHOLE, "lr": NUMBER, "tokens_per_second": NUMBER}}


def well_formed(message) -> bool:
    """An event the registry can apply: a known type with the fields it reads, of the types it reads."""
    if not isinstance(message, dict) or message.get("type") not in EVENT_FIELDS:
        return False
    fields = EVENT_FIELDS[message["type"]]
    return all(isinstance(message.get(key), kinds) and not isinstance(message.get(key), bool)
               for key, kinds in fields.items())


def check_saved_run(folder: Path) -> None:
    """A run folder written by the confined process holds plain folders and files only: no link that
    would make the server read something else when it opens the run. ValueError naming the first that is not."""
    if not folder.is_dir() or folder.is_symlink():
        raise ValueError(f"the run was not saved in {folder.name}.")
    for root, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            info = os.lstat(os.path.join(root, name))
            if not (stat.S_ISDIR(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_nlink == 1)):
                raise ValueError(f"the run saved {os.path.relpath(os.path.join(root, name), folder)!r}, "
                                 f"which is not a plain file.")


def data_folders(source: str) -> tuple[str, list[str]]:
    """A local folder of the IMDB data (a Hub id is downloaded here first: the sandbox has no network)
    and the folders the training process must read for it (where a download's links point included)."""
    path = Path(source).expanduser()
    if not path.exists():
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, repo_type="dataset"))
        except Exception as error:      # offline, a wrong id: said in one sentence, as minitx.data says it
            raise RuntimeError(f"could not download the IMDB dataset {source!r} ({type(error).__name__}); set "
                               f"MINITX_IMDB to a local copy, or go online.") from None
    return str(path.resolve()), readable_folders(path)


class ConfinedRun:
    """A run's training process, confined, as the registry holds it (a minitx.launch.RunProcess)."""

    def __init__(self, job: RunJob, where: Confinement):
        self.job, self.where = job, where
        self.messages: queue.Queue = queue.Queue()
        self.process = None
        self.errors: collections.deque = collections.deque(maxlen=20)      # the last lines it wrote to stderr
        self._stop, self._killed, self._lock = threading.Event(), False, threading.Lock()
        self._stepping = threading.Event()        # the first step came: the memory it uses is the baseline
        self._runner = threading.Thread(target=self._run, daemon=True, name=f"minitx-confined-{job.name}")
        self._runner.start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def next_event(self, timeout: float) -> dict:
        return self.messages.get(timeout=timeout)

    def is_alive(self) -> bool:
        return self._runner.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._runner.join(timeout)

    def stop(self) -> None:
        """Stop after this step; a run still going STOP_GRACE seconds later is killed, unsaved."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            self._send(b"stop\n")
        timer = threading.Timer(STOP_GRACE, self.kill, [Verdict(Kind.STUCK_AFTER_STOP, {"seconds": STOP_GRACE})])
        timer.daemon = True
        timer.start()

    def kill(self, verdict: Verdict | None = None) -> None:
        with self._lock:
            self._killed = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill(verdict)

    def _send(self, line: bytes) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.write(line)
                self.process.stdin.flush()
            except (OSError, ValueError):
                pass

    def _run(self) -> None:
        checkpoints, name, staging, end = Path(self.job.checkpoint_dir), self.job.name, None, None
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".saving-learner-{name}-", dir=checkpoints)).resolve()
            inside = {**asdict(self.job), "checkpoint_dir": str(staging)}
            if self.job.resume:
                shutil.copytree(self.job.resume, staging / name, symlinks=True)
                inside["resume"] = str(staging / name)
            inside["source"], read_only = data_folders(self.job.source or imdb_source())
            end = self._train(inside, staging, read_only)
            if end.get("checkpoint") and end["status"] != "failed":
                check_saved_run(staging / name)
                put_in_place(staging / name, checkpoints / name)
                end["checkpoint"] = str(checkpoints / name)
            else:
                end["checkpoint"] = None
        except Exception as error:          # data that cannot be fetched, a run saved wrongly: the run failed
            end = end_event(str(error) or type(error).__name__)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            self.messages.put(end)

    def _train(self, inside: dict, staging: Path, read_only: list[str]) -> dict:
        """Start the training process, pass its events on, and return its end event (one made here
        if it ended without one)."""
        datasets = "/tmp/datasets" if self.where.name == "isolated" else str(staging / ".datasets")
        env = {"HF_DATASETS_CACHE": datasets, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        with self._lock:                 # the job is the first line, before any "stop"
            if self._killed:
                raise RuntimeError("the run was stopped before it started.")
            self.process = self.where.start_python(__name__, env=env, read_only=read_only, writable=[str(staging)],
                                                   tmp_bytes=TMP_BYTES)
            self._send(json.dumps(inside).encode() + b"\n")
            if self._stop.is_set():
                self._send(b"stop\n")
        self.process.watch(Limits(cpu_seconds=None, memory_bytes=LEARNER_RUN_MEMORY), 0.5, ready=self._stepping)
        threading.Thread(target=self._read_errors, daemon=True).start()
        end, received = None, 0
        with self.process.stdout as stream:
            while line := stream.readline(MESSAGE_BYTES + 1):
                received += len(line)
                if received > MESSAGES_BYTES:
                    self.process.kill(Verdict(Kind.TOO_MANY_EVENTS, {"limit_mb": MESSAGES_BYTES >> 20}))
                    break
                message = parse(line)
                if not well_formed(message):
                    continue
                if message["type"] == "end":
                    end = message
                else:
                    if message["type"] == "step":
                        self._stepping.set()
                    self.messages.put(message)
        code = self.process.wait()
        if self.process.verdict is not None:
            return end_event(self.process.verdict.message)
        if end is None or code != 0:
            said = f": {self.errors[-1]}" if self.errors else ""
            return end_event(f"the training process ended unexpectedly (exit code {code}){said}")
        summary = end.get("summary")
        return {"type": "end", "status": end["status"] if end["status"] in ("finished", "stopped") else "failed",
                "reason": str(end["reason"]) if end.get("reason") is not None else None,
                "checkpoint": end.get("checkpoint"), "summary": summary if isinstance(summary, dict) else None}

    def _read_errors(self) -> None:
        with self.process.stderr as stream:
            self.errors.extend(text for line in iter(lambda: stream.readline(4096), b"")
                               if (text := line.decode("utf-8", "replace").strip()))


class LearnerCodeLauncher:
    """The app's launcher: minitx's own runs in a local worker (minitx.launch), runs with a learner's
    code confined (`where`: the confinement, by default the one this machine allows)."""

    def __init__(self, where: Confinement | None = None):
        self.where, self.local = where, LocalLauncher()

    def launch(self, job: RunJob) -> RunProcess:
        if not job.learner_code:
            return self.local.launch(job)
        unknown = sorted(set(job.learner_code) - set(SWAPPABLE))
        if unknown:
            raise ValueError(f"a run cannot train with a learner's {', '.join(unknown)}.")
        return ConfinedRun(job, self.where or confinement())


# -- inside the confinement ------------------------------------------------------------------------

def main() -> None:
    channel = protocol_stream()          # what the run or the learner's code prints is not an event
    job = RunJob(**json.loads(sys.stdin.readline()))
    stop = threading.Event()

    def listen():                        # "stop", or the server gone: the run stops after this step
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
        stop.set()

    threading.Thread(target=listen, daemon=True).start()
    apply(Limits(cpu_seconds=None, wall_seconds=None, memory_bytes=LEARNER_RUN_MEMORY, processes=None))
    with ending_what_it_leaves():        # with limits only, what the learner's code started ends here
        try:
            functions = {name: load_function(get_lab(name), text, f"{name}.py")
                         for name, text in job.learner_code.items()}
        except ValueError as error:
            send(channel, end_event(str(error)))
        else:
            notes = {"learner_code": sorted(functions), "learner_code_sources": dict(job.learner_code)}
            train_job(job, lambda message: send(channel, message), stop, swaps_for(functions), notes)
    os._exit(0)


if __name__ == "__main__":
    main()
