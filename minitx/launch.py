"""How a training run is launched for the app: the job it is given, the process it trains in, the events it sends.

    run = LocalLauncher().launch(job)      # a RunProcess: next_event, stop, is_alive, join, kill
    run.next_event(timeout=0.25)           # {"type": "phase" | "step" | "eval" | "end", ...}

`RunRegistry` (minitx.runs) is given a launcher. `LocalLauncher` trains minitx's own code in a worker
process of its own (multiprocessing's spawn), at a lower OS priority than the server, so that a page
the learner opens gets the CPU first: a process rather than a thread, so that the run's random
numbers are its own and a crash cannot take the server down. A run with a learner's code needs the
labs' confined launcher (minitx.labs.training_run), which speaks the same events. Either way the
training itself is `train_job`, and it always ends with one "end" event.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from .config import ModelConfig, TrainConfig
from .train import run_training

WORKER_NICENESS = 10            # how far below the server a worker runs (Unix nice; 19 is lowest)


@dataclass(frozen=True)
class RunJob:
    """Everything a run's process needs to train it, as plain data."""

    model: dict                             # ModelConfig.to_dict()
    train: dict                             # TrainConfig.to_dict()
    name: str
    checkpoint_dir: str
    source: str | None = None               # the IMDB data (minitx.data)
    resume: str | None = None               # a saved run's folder to continue
    learner_code: dict = field(default_factory=dict)    # {lab name: the learner's file}


class Publisher:
    """Training callbacks that send each phase, step and evaluation as one message {"type": ..., **event}."""

    def __init__(self, publish):
        self.on_phase, self.on_step, self.on_eval = (lambda event, kind=kind: publish({"type": kind, **event})
                                                     for kind in ("phase", "step", "eval"))


def train_job(job: RunJob, publish, stop, swaps: dict | None = None, notes: dict | None = None) -> None:
    """Train the job's run, save it, and always publish one "end" message. swaps: functions at the
    model's swap points (the learner's); notes: kept with its metrics."""
    try:
        outcome = run_training(ModelConfig.from_dict(job.model), TrainConfig.from_dict(job.train),
                               [Publisher(publish)], stop, job.checkpoint_dir, job.name, job.source, notes,
                               resume=job.resume, swaps=swaps)
        summary = {k: v for k, v in outcome.metrics.items() if k not in ("history", "attention_snapshots")}
        publish({"type": "end", "status": outcome.result.status, "reason": outcome.result.reason,
                 "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None, "summary": summary})
    except BaseException as error:  # the registry must hear about every way a run ends
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        publish({"type": "end", "status": "failed", "reason": reason or type(error).__name__,
                 "checkpoint": None, "summary": None, "traceback": traceback.format_exc(limit=5)})


def end_event(reason: str) -> dict:
    """The end of a run that ended without saying so itself."""
    return {"type": "end", "status": "failed", "checkpoint": None, "summary": None, "reason": reason}


class RunProcess(Protocol):
    """A run's process as the registry holds it: its events, Stop (after the current step, then it
    saves), and a process's is_alive, join, kill, pid and exitcode."""

    pid: int | None
    exitcode: int | None

    def next_event(self, timeout: float) -> dict: ...       # queue.Empty if none comes in time

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def kill(self) -> None: ...


def _worker_main(job: RunJob, messages, stop_event) -> None:
    """A local worker process: train, then make sure every message is in the pipe before it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the server's Ctrl-C: the server stops us cleanly
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    parent = mp.parent_process()

    def watch_parent():                            # the server died: stop after this step and save
        while not stop_event.is_set():
            if parent is not None and not parent.is_alive():
                stop_event.set()
            time.sleep(0.5)

    threading.Thread(target=watch_parent, daemon=True).start()
    train_job(job, messages.put, stop_event)
    messages.close()
    messages.join_thread()


class LocalRun:
    """A run in a worker process of its own, minitx's code only (a RunProcess)."""

    def __init__(self, job: RunJob, context):
        self.messages, self.stop_event = context.Queue(), context.Event()
        self.process = context.Process(target=_worker_main, args=(job, self.messages, self.stop_event),
                                       name=f"minitx-{job.name}", daemon=True)
        self.process.start()
        self.pid = self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def next_event(self, timeout: float) -> dict:
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.stop_event.set()

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)

    def kill(self) -> None:
        self.process.kill()


class LocalLauncher:
    """minitx's own code in a worker process of its own. It runs no learner's code."""

    def __init__(self):
        self.context = mp.get_context("spawn")

    def launch(self, job: RunJob) -> RunProcess:
        if job.learner_code:
            raise ValueError("this registry cannot train with a learner's code: give it the labs' launcher "
                             "(minitx.labs.training_run.LearnerCodeLauncher).")
        return LocalRun(job, self.context)
