"""A training run with the learner's code in it ("train with my attention"), in the isolated sandbox.

    server: RunRegistry (trusted)                          bwrap: the training process
      a private staging folder, .saving-sandbox-*/  --(stdin: the job, then "stop")-->  trains the run with
      the data and minitx's cache, read-only                                            the learner's function
      <-- (stdout: one JSON event per line: phase, step, eval, end) --               saves into the staging folder
      checks what was saved (plain files only), moves it into the checkpoints folder

The training process sees Python, minitx, the data and minitx's cache, read-only, and one
writable folder: the staging folder, where it saves the run (a continued run gets a copy of its
folder there). It has no network, sees no other process, and whatever it started ends with it.
The registry moves the saved run into place itself, so the learner's code never writes in the
checkpoints folder, and reads its events as data: one that is not well formed is dropped. Its
processes together may use LEARNER_RUN_MEMORY more than at the first step (the server adds up
their memory every 0.5 s; the training process alone is also held to that by RLIMIT_AS); its
processor time is not bounded (Stop is: `minitx.runs`). A run with the learner's code ends with
the server (no save): the sandbox dies with its parent.

Where bwrap cannot run, the run trains in a worker process like any other (`minitx.runs`), with
a memory limit on the learner's code, and what that code started is killed when the run ends.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..runs import LEARNER_RUN_MEMORY
from .jail import bwrap_argv, readable_folders
from .job import descendants, memory_bytes

MESSAGE_BYTES = 1 << 20                  # one event, a line of JSON
MESSAGES_BYTES = 64 << 20                # all of a run's events
TREE_MEMORY = LEARNER_RUN_MEMORY         # what the run's processes together may use beyond the first step's
WATCH_SECONDS = 0.5
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
    """A run folder written by the sandbox holds plain folders and files only: no link that would
    make the server read something else when it opens the run. ValueError naming the first that is not."""
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


class _StopLine:
    """The run's stop event, as the registry uses it: setting it tells the training process, on its stdin."""

    def __init__(self, run: SandboxedRun):
        self.run, self._set = run, threading.Event()

    def set(self) -> None:
        self._set.set()
        self.run.send(b"stop\n")

    def is_set(self) -> bool:
        return self._set.is_set()


class SandboxedRun:
    """A run's training process in bwrap, with the interface of the multiprocessing worker the
    registry uses otherwise: start, is_alive, join, kill, exitcode, and its messages and stop event."""

    def __init__(self, job: dict):
        self.job = dict(job)
        self.messages: queue.Queue = queue.Queue()
        self.stop_event = _StopLine(self)
        self.process: subprocess.Popen | None = None
        self.errors: collections.deque = collections.deque(maxlen=20)      # the last lines it wrote to stderr
        self._killed, self._lock = False, threading.Lock()
        self._stepping = threading.Event()        # the first step came: the memory it uses is the baseline
        self.ended_because: str | None = None     # why this side ended it
        self._runner = threading.Thread(target=self._run, daemon=True, name=f"minitx-sandbox-{job['name']}")

    # -- what the registry calls --------------------------------------------------------

    def start(self) -> None:
        self._runner.start()

    def is_alive(self) -> bool:
        return self._runner.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._runner.join(timeout)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            if self.process is not None and self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def send(self, line: bytes) -> None:
        with self._lock:
            self._write(line)

    def _write(self, line: bytes) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.write(line)
                self.process.stdin.flush()
            except (OSError, ValueError):
                pass

    # -- the run --------------------------------------------------------------------------

    def _run(self) -> None:
        from ..data import imdb_source

        checkpoints = Path(self.job["checkpoint_dir"])
        name, end = self.job["name"], None
        staging = None
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".saving-sandbox-{name}-", dir=checkpoints))
            inside = {**self.job, "checkpoint_dir": str(staging.resolve())}
            if self.job.get("resume"):
                shutil.copytree(self.job["resume"], staging / name, symlinks=True)
                inside["resume"] = str(staging.resolve() / name)
            source, read_only = data_folders(self.job.get("source") or imdb_source())
            inside["source"] = source
            end = self._train(inside, staging, read_only)
            if end.get("checkpoint") and end["status"] != "failed":
                from ..checkpoint import put_in_place

                check_saved_run(staging / name)
                put_in_place(staging / name, checkpoints / name)
                end["checkpoint"] = str(checkpoints / name)
            else:
                end["checkpoint"] = None
        except Exception as error:          # data that cannot be fetched, a run saved wrongly: the run failed
            end = {"type": "end", "status": "failed", "checkpoint": None, "summary": None,
                   "reason": str(error) or type(error).__name__}
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            self.messages.put(end)

    def _train(self, inside: dict, staging: Path, read_only: list[str]) -> dict:
        """Start the training process, pass its events on, and return its end event (one made here
        if it ended without one)."""
        import minitx
        from ..tokenizer import cache_dir

        cache = cache_dir().parent
        env = {"PYTHONPATH": str(Path(minitx.__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "MINITX_CACHE": str(cache), "HF_DATASETS_CACHE": "/tmp/datasets",
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        argv = bwrap_argv(read_only=[*read_only, *([str(cache.resolve())] if cache.is_dir() else [])],
                          writable=[str(staging.resolve())], tmp_bytes=TMP_BYTES, env=env, as_pid_1=True)
        with self._lock:                 # the job is the first line, before any "stop"
            if self._killed:
                raise RuntimeError("the run was stopped before it started.")
            self.process = subprocess.Popen(argv + [sys.executable, "-P", "-m", __name__], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd="/tmp")
            self._write(json.dumps(inside).encode() + b"\n")
            if self.stop_event.is_set():
                self._write(b"stop\n")
        threading.Thread(target=self._read_errors, daemon=True).start()
        threading.Thread(target=self._watch_memory, daemon=True).start()
        end, received = None, 0
        with self.process.stdout as stream:
            while True:
                line = stream.readline(MESSAGE_BYTES + 1)
                received += len(line)
                if received > MESSAGES_BYTES:
                    self._end(f"the training process sent more than {MESSAGES_BYTES >> 20} MiB of events.")
                if not line or received > MESSAGES_BYTES:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not well_formed(message):
                    continue
                if message["type"] == "end":
                    end = message
                else:
                    if message["type"] == "step":
                        self._stepping.set()
                    self.messages.put(message)
        code = self.process.wait()
        if self.ended_because:
            return {"type": "end", "status": "failed", "checkpoint": None, "summary": None,
                    "reason": self.ended_because}
        if end is None or code != 0:
            said = f": {self.errors[-1]}" if self.errors else ""
            return {"type": "end", "status": "failed", "checkpoint": None, "summary": None,
                    "reason": f"the training process ended unexpectedly (exit code {code}){said}"}
        summary = end.get("summary")
        return {"type": "end", "status": end["status"] if end["status"] in ("finished", "stopped") else "failed",
                "reason": str(end["reason"]) if end.get("reason") is not None else None,
                "checkpoint": end.get("checkpoint"), "summary": summary if isinstance(summary, dict) else None}

    def _end(self, why: str) -> None:
        if self.ended_because is None:
            self.ended_because = why
        self.kill()

    def _watch_memory(self) -> None:
        """The memory of all the run's processes together (the learner's code may start more): past
        TREE_MEMORY beyond what they used at the first step, the run is ended."""
        baseline = None
        while self.process.poll() is None:
            time.sleep(WATCH_SECONDS)
            used = sum(memory_bytes(pid) for pid in [self.process.pid, *descendants(self.process.pid)])
            if baseline is None:
                baseline = used if self._stepping.is_set() else None
            elif used - baseline > TREE_MEMORY:
                self._end(f"the run's processes together used more than {TREE_MEMORY / 2**30:g} GiB of memory "
                          f"beyond what the run started with, and were stopped.")
                return

    def _read_errors(self) -> None:
        with self.process.stderr as stream:
            for line in iter(lambda: stream.readline(4096), b""):
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self.errors.append(text)


# -- inside the sandbox ----------------------------------------------------------------------

class _Events:
    """The worker's message queue, as JSON lines on a channel of its own (print goes to stderr)."""

    def __init__(self, fd: int):
        self.stream = os.fdopen(fd, "w", encoding="utf-8")

    def put(self, message: dict) -> None:
        self.stream.write(json.dumps(message, default=str) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass

    def join_thread(self) -> None:
        pass


def main() -> None:
    from ..runs import _worker_main

    channel = os.dup(1)
    os.dup2(2, 1)                       # what the run or the learner's code prints is not an event
    job = json.loads(sys.stdin.readline())
    stop = threading.Event()

    def listen():                       # "stop", or the server gone: the run stops after this step
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
        stop.set()

    threading.Thread(target=listen, daemon=True).start()
    events = _Events(channel)
    _worker_main(job, events, stop)
    os._exit(0)


if __name__ == "__main__":
    main()
