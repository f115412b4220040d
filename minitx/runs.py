"""Training runs in the background, for the app: start, watch, stop. No Streamlit in here.

    registry = RunRegistry("checkpoints")
    run_id = registry.start(model_cfg, train_cfg)
    registry.snapshot(run_id)      # status, step/total, epoch, ETA, tokens/s, history
    registry.stop(run_id)          # takes effect within one training step; the run is saved
    registry.resume("my-run")      # goes on where it stopped, as if it never had

Each run trains in a process of its own, started by the registry's launcher
(minitx.launch: minitx's own code in a local worker; the app gives it the labs'
launcher, which confines a run with a learner's code). The process sends every
training event; a thread of the registry moves them into the run's record, which
`snapshot` copies. Stop asks the run to stop before its next step.

One run trains at a time on this machine: while a run is in progress the registry
holds the machine's `TrainingLock`, so a second start, here, in another server or
on the command line, is refused with the run in progress named. Statuses:

    queued    the worker is starting and preparing the data
    running   training steps are being taken
    stopping  Stop was pressed; the current step finishes, then the run is saved
    stopped | finished | failed (with a reason)

Finished and stopped runs are saved whole or not at all (`minitx.checkpoint`), with
what continuing them needs (`minitx.train.resume`).
Nothing is orphaned: the registry stops and joins its run's process when the
server exits, and a run whose server died stops within a second.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from .checkpoint import check_run_name, clean_stale_saves, read_metrics, run_path
from .config import ModelConfig, TrainConfig
from .launch import LocalLauncher, RunJob, RunProcess, end_event
from .train import check_run, default_run_name, resume_configs
from .training_lock import TrainingLock, default_lock_path, describe_holder

STATUSES = ("queued", "running", "stopping", "stopped", "finished", "failed")
ACTIVE_STATUSES = ("queued", "running", "stopping")


class RunBusyError(ValueError):
    """A run is already in progress; only one trains at a time."""


@dataclass
class RunSnapshot:
    """A copy of one run's state at one moment: safe to read while the run goes on."""

    run_id: str
    name: str
    model_config: ModelConfig
    train_config: TrainConfig
    learner_code: tuple[str, ...] = ()    # the labs whose learner's function it trains with
    status: str = "queued"
    reason: str | None = None
    phase: str = "starting the worker"
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    elapsed: float = 0.0                  # seconds since start() was called
    eta_seconds: float | None = None
    tokens_per_second: float | None = None
    lr: float | None = None
    steps: list[dict] = field(default_factory=list)     # one event per optimiser step: loss, lr, ...
    evals: list[dict] = field(default_factory=list)     # one event per evaluation: the task's metrics
    checkpoint: str | None = None         # the saved run folder, once saved
    summary: dict | None = None           # the final metrics, once ended

    @property
    def epochs(self) -> int:
        return self.train_config.epochs

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass
class _Run(RunSnapshot):
    """A run's state as the registry keeps it, and what the registry holds of its process."""

    process: RunProcess | None = None
    started: float = field(default_factory=time.monotonic)
    training_started: float | None = None
    ended: float | None = None
    pump: threading.Thread | None = None  # reads the process's events, then joins (reaps) it
    done: threading.Event = field(default_factory=threading.Event)


class RunRegistry:
    """Every run this server started, one training at a time. Thread-safe."""

    def __init__(self, checkpoint_dir: str | os.PathLike = "checkpoints", source: str | None = None,
                 training_lock: str | os.PathLike | None = None, launcher=None):
        """launcher: what starts a run's process (minitx.launch); by default minitx's own code only."""
        self.checkpoint_dir = Path(checkpoint_dir)
        self.source = source
        self.training_lock = TrainingLock(training_lock or default_lock_path())
        self.launcher = launcher or LocalLauncher()
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.cleaned = clean_stale_saves(self.checkpoint_dir)   # half-saves a killed worker left
        atexit.register(self.shutdown)

    # -- starting ---------------------------------------------------------------------

    def active(self) -> str | None:
        """The id of the run that is queued, running or stopping, if any."""
        with self._lock:
            return self._active_locked()

    def _active_locked(self) -> str | None:
        return next((r.run_id for r in self._runs.values() if r.status in ACTIVE_STATUSES), None)

    def busy_reason(self) -> str | None:
        """Why a start now would be refused (naming the run in progress), or None if it would not."""
        with self._lock:
            here = self._busy_here_locked()
        if here is not None:
            return here
        elsewhere = self.training_lock.holder()
        return None if elsewhere is None else describe_holder(elsewhere)

    def _busy_here_locked(self) -> str | None:
        busy = self._active_locked()
        if busy is None:
            return None
        other = self._runs[busy]
        where = f"step {other.step}/{other.total_steps}" if other.total_steps else other.phase
        return (f"run {other.name} is {other.status} ({where}); only one run trains at a time: "
                f"stop it or wait for it to finish.")

    def start(self, model_cfg: ModelConfig, train_cfg: TrainConfig, name: str | None = None,
              learner_code: dict[str, str] | None = None) -> str:
        """Start training in the background and return the run's id; RunBusyError if one is going.
        learner_code ({lab name: the learner's file}) trains with the learner's functions in place
        of minitx's, in a process the launcher confines (one that cannot refuses)."""
        learner_code = dict(learner_code or {})
        model_cfg.validate()
        train_cfg.validate()
        check_run(model_cfg, train_cfg)
        name = check_run_name(name) if name else default_run_name()
        if run_path(self.checkpoint_dir, name).exists():
            raise ValueError(f"a run named {name!r} already exists in {self.checkpoint_dir}; "
                             f"choose another name.")
        return self._launch(model_cfg, train_cfg, name, learner_code, None)

    def resume(self, name: str, epochs: int | None = None) -> str:
        """Continue the saved run `name` in the background where it stopped (with more epochs if given),
        as if it had never stopped; its charts go on from there. ValueError if it cannot be continued."""
        path = run_path(self.checkpoint_dir, name)
        model_cfg, train_cfg = resume_configs(path, epochs)
        check_run(model_cfg, train_cfg)
        learner_code = read_metrics(path).get("learner_code_sources") or {}
        return self._launch(model_cfg, train_cfg, name, learner_code, path)

    def _launch(self, model_cfg: ModelConfig, train_cfg: TrainConfig, name: str, learner_code: dict,
                resume: Path | None) -> str:
        with self._lock:
            busy = self._busy_here_locked()
            if busy is not None:
                raise RunBusyError(busy)
            # taking the lock is the check for another server's run (or the command line's)
            elsewhere = self.training_lock.acquire({
                "run": name, "pid": os.getpid(), "checkpoints": str(self.checkpoint_dir.resolve()),
                "started": time.time()})
            if elsewhere is not None:
                raise RunBusyError(describe_holder(elsewhere))
            try:
                job = RunJob(model_cfg.to_dict(), train_cfg.to_dict(), name, str(self.checkpoint_dir), self.source,
                             str(resume) if resume else None, learner_code)
                run = _Run(f"run-{next(self._ids)}-{name}", name, model_cfg, train_cfg, tuple(sorted(learner_code)),
                           process=self.launcher.launch(job))
                if resume is not None:          # the charts go on from where the run stopped
                    history = read_metrics(resume).get("history") or {}
                    run.steps, run.evals = list(history.get("steps", [])), list(history.get("evals", []))
                    if run.steps:
                        run.step, run.epoch = run.steps[-1]["step"], run.steps[-1]["epoch"]
            except BaseException:                      # no run: the machine is free again
                self.training_lock.release()
                raise
            self._runs[run.run_id] = run
        run.pump = threading.Thread(target=self._pump, args=(run,), daemon=True, name=f"minitx-pump-{name}")
        run.pump.start()
        return run.run_id

    def _pump(self, run: _Run) -> None:
        """Move a run's events into the registry until it ends (or dies), then reap its process."""
        while not run.done.is_set():
            try:
                message = run.process.next_event(timeout=0.25)
            except queue.Empty:
                if not run.process.is_alive():       # exited, and nothing left in the pipe
                    self._apply(run, end_event(f"the training process ended unexpectedly (exit code "
                                               f"{run.process.exitcode})"))
                continue
            self._apply(run, message)
        run.process.join(timeout=10)

    # -- what workers report ----------------------------------------------------------

    def _apply(self, run: _Run, message: dict) -> None:
        kind = message.get("type")
        event = {k: v for k, v in message.items() if k != "type"}
        with self._lock:
            if run.done.is_set():
                return
            if kind == "phase":
                run.phase = event["phase"]
                if event["phase"] == "training":
                    run.total_steps = event.get("total_steps")
                    run.training_started = time.monotonic()
                    if run.status == "queued":
                        run.status = "running"
            elif kind == "step":
                run.steps.append(event)
                run.step, run.total_steps = event["step"], event["total_steps"]
                run.epoch, run.lr = event["epoch"], event["lr"]
                run.tokens_per_second = event["tokens_per_second"]
            elif kind == "eval":
                run.evals.append(event)
            elif kind == "end":
                run.status, run.reason = event["status"], event.get("reason")
                run.checkpoint, run.summary = event.get("checkpoint"), event.get("summary")
                run.phase, run.ended = "ended", time.monotonic()
                run.done.set()
                self.training_lock.release()

    # -- reading and stopping ---------------------------------------------------------

    def _get(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise ValueError(f"there is no run with id {run_id!r} in this server.")
        return run

    def snapshot(self, run_id: str) -> RunSnapshot:
        """A consistent copy of a run's state: status, progress, ETA, speed and history."""
        with self._lock:
            run = self._get(run_id)
            now = run.ended or time.monotonic()
            state = {f.name: getattr(run, f.name) for f in fields(RunSnapshot)}
            return RunSnapshot(**{**state, "steps": list(run.steps), "evals": list(run.evals),
                                  "elapsed": now - run.started, "eta_seconds": self._eta(run, now)})

    @staticmethod
    def _eta(run: _Run, now: float) -> float | None:
        """Seconds left at the pace so far (evaluations included, since they are in that pace)."""
        if run.status != "running" or not run.step or not run.total_steps or run.training_started is None:
            return None
        return max(0.0, (now - run.training_started) / run.step * (run.total_steps - run.step))

    def stop(self, run_id: str) -> None:
        """Ask a run to stop: it finishes the current step (or evaluation batch), then saves."""
        with self._lock:
            run = self._get(run_id)
            if run.status in ("queued", "running"):
                run.status = "stopping"
                run.process.stop()

    def wait(self, run_id: str, timeout: float | None = None) -> RunSnapshot:
        """Block until the run ends (or timeout seconds pass) and return its snapshot."""
        self._get(run_id).done.wait(timeout)
        return self.snapshot(run_id)

    def run_ids(self) -> list[str]:
        """Ids of the runs this server started, newest first."""
        with self._lock:
            return list(reversed(self._runs))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every run and wait for its worker to save and exit; kill what does not."""
        with self._lock:
            runs = [r for r in self._runs.values() if not r.done.is_set()]
        for run in runs:
            run.process.stop()
        deadline = time.monotonic() + timeout
        for run in runs:
            if run.pump is None:                   # started in another thread this very moment
                continue
            # the pump joins the worker: not a second join here, as two threads joining one
            # process race for its exit status and the loser reads None
            run.pump.join(max(0.1, deadline - time.monotonic()))
            if run.process.is_alive():             # it would not stop
                run.process.kill()
                run.pump.join(5)                   # the pump sees it dead, reports it and reaps it
        self.training_lock.release()               # if a killed run's end was never reported


def format_duration(seconds: float | None) -> str:
    """1:05 or 1:02:03; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
