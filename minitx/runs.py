"""Training runs in the background, for the app: start, watch, stop. No Streamlit in here.

    registry = RunRegistry("checkpoints")
    run_id = registry.start(model_cfg, train_cfg)
    registry.snapshot(run_id)      # status, step/total, epoch, ETA, tokens/s, history
    registry.stop(run_id)          # takes effect within one training step; the run is saved
    registry.resume("my-run")      # goes on where it stopped, as if it never had

Each run trains in a worker process of its own (multiprocessing's `spawn`), at a
lower OS priority than the server, so that a page the learner opens gets the CPU
first. A process rather than a thread, so that the run's random numbers are its
own (a page seeding torch cannot change a run's result) and a crash cannot take
the server down. The worker sends every training event over a queue; a thread of
the registry moves them into the run's record, which `snapshot` copies. Stop is
an event the trainer checks before every step. A run with the learner's code trains in the
isolated sandbox where it runs (`minitx.labs.training_job`): the same events, as lines of JSON.

One run trains at a time on this machine: while a run is in progress the registry
holds the machine's `TrainingLock`, so a second start, here, in another server or
on the command line, is refused with the run in progress named. Statuses:

    queued    the worker is starting and preparing the data
    running   training steps are being taken
    stopping  Stop was pressed; the current step finishes, then the run is saved
    stopped | finished | failed (with a reason)

Finished and stopped runs are saved whole or not at all (`minitx.checkpoint`), with
what continuing them needs (`minitx.train.resume`).
Nothing is orphaned: the registry stops and joins its worker when the server
exits, and a worker whose server died stops within a second and saves its run.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import check_run_name, clean_stale_saves, read_metrics, run_path
from .config import ModelConfig, TrainConfig
from .train import check_run, default_run_name, resume_configs, run_training
from .training_lock import TrainingLock, default_lock_path, describe_holder

STATUSES = ("queued", "running", "stopping", "stopped", "finished", "failed")
ACTIVE_STATUSES = ("queued", "running", "stopping")
WORKER_NICENESS = 10            # how far below the server a worker runs (Unix nice; 19 is lowest)
LEARNER_RUN_MEMORY = 8 * 2**30  # what a run with a learner's code may allocate beyond its start
STOP_GRACE = 30.0               # seconds a run with a learner's code has to stop before it is killed


class RunBusyError(ValueError):
    """A run is already in progress; only one trains at a time."""


@dataclass
class RunSnapshot:
    """A copy of one run's state at one moment: safe to read while the run goes on."""

    run_id: str
    name: str
    status: str
    reason: str | None
    phase: str
    step: int
    total_steps: int | None
    epoch: int
    epochs: int
    elapsed: float                        # seconds since start() was called
    eta_seconds: float | None
    tokens_per_second: float | None
    lr: float | None
    steps: list[dict]                     # one event per optimiser step: loss, lr, ...
    evals: list[dict]                     # one event per evaluation: the task's metrics
    checkpoint: str | None                # the saved run folder, once saved
    summary: dict | None                  # the final metrics, once ended
    model_config: ModelConfig
    train_config: TrainConfig
    learner_code: tuple[str, ...] = ()    # the labs whose learner's function it trains with

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass
class _Run:
    run_id: str
    name: str
    model_config: ModelConfig
    train_config: TrainConfig
    process: object                       # the worker process
    messages: object                      # its events, on their way to the registry
    stop_event: object
    started: float = field(default_factory=time.monotonic)
    status: str = "queued"
    reason: str | None = None
    phase: str = "starting the worker"
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    tokens_per_second: float | None = None
    lr: float | None = None
    training_started: float | None = None
    ended: float | None = None
    steps: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    checkpoint: str | None = None
    summary: dict | None = None
    pump: threading.Thread | None = None  # reads the worker's events, then joins (reaps) it
    done: threading.Event = field(default_factory=threading.Event)
    learner_code: tuple[str, ...] = ()
    stuck: bool = False                   # killed after Stop: the learner's code did not return


class _Publisher:
    """The training callbacks of a worker: every event becomes one message to the registry."""

    def __init__(self, publish):
        self.publish = publish

    def on_phase(self, event):
        self.publish({"type": "phase", **event})

    def on_step(self, event):
        self.publish({"type": "step", **event})

    def on_eval(self, event):
        self.publish({"type": "eval", **event})


@contextlib.contextmanager
def _learner_functions(sources: dict[str, str]):
    """The learner's functions (minitx.labs) in place of minitx's for the whole run, in this
    worker process, never the server's; their allocations capped so that a runaway one fails
    at once, and every process they started (orphans included: this process is their subreaper)
    killed when the run ends. Yields the notes the run keeps: which functions were the learner's."""
    if not sources:
        yield {}
        return
    from .labs import get_lab
    from .labs.checking import load_function
    from .labs.job import ending_what_it_leaves
    from .labs.plug import learner_code
    from .labs.sandbox import limit_memory

    limit_memory(LEARNER_RUN_MEMORY)
    with ending_what_it_leaves():
        functions = {name: load_function(get_lab(name), source, f"{name}.py") for name, source in sources.items()}
        with learner_code(functions):
            yield {"learner_code": sorted(sources), "learner_code_sources": dict(sources)}   # to be continued with


def _isolated() -> bool:
    from .labs.jail import isolation

    return isolation() == "isolated"


def _worker_main(job: dict, messages, stop_event) -> None:
    """A worker process: train one run, save it, and always send one 'end' message."""
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
    try:
        with _learner_functions(job.get("learner_code") or {}) as notes:
            outcome = run_training(ModelConfig.from_dict(job["model"]), TrainConfig.from_dict(job["train"]),
                                   [_Publisher(messages.put)], stop_event, job["checkpoint_dir"],
                                   job["name"], job["source"], notes, resume=job.get("resume"))
        summary = {k: v for k, v in outcome.metrics.items() if k not in ("history", "attention_snapshots")}
        messages.put({"type": "end", "status": outcome.result.status, "reason": outcome.result.reason,
                      "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None,
                      "summary": summary})
    except BaseException as error:  # the registry must hear about every way a run ends
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        messages.put({"type": "end", "status": "failed", "reason": reason or type(error).__name__,
                      "checkpoint": None, "summary": None, "traceback": traceback.format_exc(limit=5)})
    messages.close()
    messages.join_thread()                         # every message is in the pipe before we exit


class RunRegistry:
    """Every run this server started, one training at a time. Thread-safe."""

    def __init__(self, checkpoint_dir: str | os.PathLike = "checkpoints", source: str | None = None,
                 training_lock: str | os.PathLike | None = None):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.source = source
        self.training_lock = TrainingLock(training_lock or default_lock_path())
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._context = mp.get_context("spawn")
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
        of minitx's (minitx.labs.plug); they run in the run's worker process only."""
        learner_code = dict(learner_code or {})
        if learner_code:
            from .labs.plug import PLUGS

            unknown = sorted(set(learner_code) - set(PLUGS))
            if unknown:
                raise ValueError(f"a run cannot train with a learner's {', '.join(unknown)}.")
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
                job = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "name": name,
                       "checkpoint_dir": str(self.checkpoint_dir), "source": self.source,
                       "learner_code": learner_code, "resume": str(resume) if resume else None}
                if learner_code and _isolated():                   # the learner's code: in the sandbox
                    from .labs.training_job import SandboxedRun

                    process = SandboxedRun(job)
                    messages, stop_event = process.messages, process.stop_event
                else:
                    messages, stop_event = self._context.Queue(), self._context.Event()
                    process = self._context.Process(target=_worker_main, args=(job, messages, stop_event),
                                                    name=f"minitx-{name}", daemon=True)
                run = _Run(f"run-{next(self._ids)}-{name}", name, model_cfg, train_cfg, process,
                           messages, stop_event, learner_code=tuple(sorted(learner_code)))
                if resume is not None:          # the charts go on from where the run stopped
                    history = read_metrics(resume).get("history") or {}
                    run.steps, run.evals = list(history.get("steps", [])), list(history.get("evals", []))
                    if run.steps:
                        run.step, run.epoch = run.steps[-1]["step"], run.steps[-1]["epoch"]
                process.start()
            except BaseException:                      # no run: the machine is free again
                self.training_lock.release()
                raise
            self._runs[run.run_id] = run
        run.pump = threading.Thread(target=self._pump, args=(run,), daemon=True, name=f"minitx-pump-{name}")
        run.pump.start()
        return run.run_id

    def _pump(self, run: _Run) -> None:
        """Move a worker's messages into the registry until it ends (or dies), then reap it."""
        while not run.done.is_set():
            try:
                message = run.messages.get(timeout=0.25)
            except queue.Empty:
                if not run.process.is_alive():       # exited, and nothing left in the pipe
                    self._apply(run, {"type": "end", "status": "failed", "checkpoint": None,
                                      "summary": None, "reason": f"the training process ended "
                                                                 f"unexpectedly (exit code {run.process.exitcode})"})
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
                if run.stuck and run.status == "failed":
                    run.reason = (f"it did not stop within {STOP_GRACE:g} s of Stop (your code did not return), "
                                  f"so it was ended unsaved.")
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
            return RunSnapshot(
                run.run_id, run.name, run.status, run.reason, run.phase, run.step, run.total_steps,
                run.epoch, run.train_config.epochs, now - run.started, self._eta(run, now),
                run.tokens_per_second, run.lr, list(run.steps), list(run.evals), run.checkpoint,
                run.summary, run.model_config, run.train_config, run.learner_code)

    @staticmethod
    def _eta(run: _Run, now: float) -> float | None:
        """Seconds left at the pace so far (evaluations included, since they are in that pace)."""
        if run.status != "running" or not run.step or not run.total_steps or run.training_started is None:
            return None
        return max(0.0, (now - run.training_started) / run.step * (run.total_steps - run.step))

    def stop(self, run_id: str) -> None:
        """Ask a run to stop: it finishes the current step (or evaluation batch), then saves. A run
        with the learner's code that has not ended STOP_GRACE seconds later (their function does not
        return) is killed, unsaved."""
        with self._lock:
            run = self._get(run_id)
            if run.status in ("queued", "running"):
                run.status = "stopping"
                run.stop_event.set()
                if run.learner_code:
                    threading.Thread(target=self._end_if_stuck, args=(run,), daemon=True).start()

    def _end_if_stuck(self, run: _Run) -> None:
        if not run.done.wait(STOP_GRACE):
            from .labs.job import descendants, kill

            run.stuck = True
            below = descendants(run.process.pid) if run.process.pid else []
            run.process.kill()
            for pid in below:                      # what the learner's code started, too
                kill(pid)

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
            run.stop_event.set()
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
