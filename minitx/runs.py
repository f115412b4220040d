"""Training runs in the background, for the app: start, watch, stop. No Streamlit in here.

    registry = RunRegistry("checkpoints")
    run_id = registry.start(model_cfg, train_cfg)
    registry.snapshot(run_id)      # status, step/total, epoch, ETA, tokens/s, metrics history
    registry.stop(run_id)          # takes effect within one training step
    registry.give_way()            # the run pauses a moment (mid-step) while a page is drawn
    registry.prepare_worker()      # a spare worker process, ready for the next start

Why a separate process and not a thread. Each run trains in a process started
with the `spawn` context; it sends its events over a multiprocessing Queue and
watches a multiprocessing Event for Stop. Both were measured with the Quick
preset started from a real browser whose page polls once a second
(benchmarks/live_training.py; benchmarks/LIVE_TRAINING.md). The GIL was not
what cost time: thread and process finished within 5% of each other (84.5 s
and 88.4 s against 75.7 s for the command line), both slowed by the CPU the
live page's redraws take on a 2-core machine. What decided it:

- a thread shares torch's global random state with the page scripts: with a
  thread worker, visiting the Encoder page mid-run (it seeds torch for its
  random model) changed the run's result (test accuracy 0.8534, 0.8554 and
  0.8514 in three such runs instead of 0.8606), while every process run
  reproduced the command line's 0.8606 exactly;
- a process that crashes or runs out of memory cannot take the server with it,
  and can be killed outright if it ever stops answering;
- it costs about 2 s more to start (a fresh interpreter imports torch and the
  data libraries again). `prepare_worker()` pays that ahead: the app starts a
  spare worker when the Training page is drawn with no run going, and Start
  hands the run to it (about 320 MB while it waits).

One run trains at a time on this machine: a second `start` while a run is
queued, running or stopping is refused with a `RunBusyError` that names the
run in progress (refused, not queued: a queue of long runs started by
accident is worse than a clear "busy"). That holds across servers too: while
a run is in progress its registry holds a lock file (`minitx.training_lock`),
so a start in a second `streamlit run` on the same machine, or while
`python -m minitx.train` trains, is refused with that run named. Statuses:

    queued    the worker is starting and preparing the data
    running   training steps are being taken
    stopping  Stop was pressed; the current step finishes, then the run is saved
    stopped | finished | failed (with a reason)

Finished and stopped runs are saved through `minitx.checkpoint` (whole or not
at all). Nothing is orphaned: the registry stops and joins its workers when
the server exits, and a worker whose parent died (killed outright) stops
within a second and saves what it has.
"""

from __future__ import annotations

import atexit
import itertools
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from .checkpoint import check_run_name, clean_stale_saves, run_path
from .config import ModelConfig, TrainConfig
from .train import default_run_name
from .training_lock import TrainingLock, default_lock_path, describe_holder

STATUSES = ("queued", "running", "stopping", "stopped", "finished", "failed")
ACTIVE_STATUSES = ("queued", "running", "stopping")
WORKERS = ("process", "thread")
# How much lower than the server's a worker process's CPU priority is (Unix nice, 0-19).
# Measured on a 2-core machine (Quick preset, headless Chromium on the Training page):
# - at 10 (the default until runs learnt to give way), the worker gave a page switch the CPU at
#   once, but every redraw of the live panel then preempted one of its two torch threads, and
#   the other waited for it: alternating two warm trainers under a steady 0.12-core load, the
#   one at 0 took 5-11% more steps per second than the one at 10;
# - at 0, the first visit to another page mid-run took 1.04-1.27 s, over the 1 s target, until
#   runs gave way while a page is drawn (give_way()); since then 0.61-1.17 s at 0 and 0.59-0.99 s
#   at 10. Quick from the browser, both in turns within one hour: a median 1.114x and 1.105x the
#   command line at 0, 1.134x and 1.061x at 10 (3 pairs each; pairs ranged 1.03-1.22). That
#   spread hides a difference of a few percent, so the drift-proof trainer test decides.
# benchmarks/LIVE_TRAINING.md has every set. The app can choose with MINITX_WORKER_NICENESS.
WORKER_NICENESS = 0
MAX_WORKER_NICENESS = 19            # Unix's lowest priority
# How often the app's live panel asks for a snapshot and redraws: about once a second (issue 4).
# Every redraw costs the server a rerun of the panel and the browser a render: CPU a run on a
# small machine trains with (benchmarks/LIVE_TRAINING.md). MINITX_POLL_SECONDS sets it.
POLL_SECONDS = 1.0
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 0.5, 10.0
# How long a worker pauses when the app asks it to give way while a page is drawn (give_way()).
GIVE_WAY_SECONDS = 1.0
MAX_GIVE_WAY_SECONDS = 10.0


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
    worker: str
    step: int
    total_steps: int | None
    epoch: int
    epochs: int
    elapsed: float                        # seconds since start() was called
    eta_seconds: float | None
    tokens_per_second: float | None
    lr: float | None
    steps: list[dict]                     # one event per optimiser step: loss, lr, ...
    evals: list[dict]                     # one event per evaluation: val/test loss and accuracy
    checkpoint: str | None                # the saved run folder, once saved
    summary: dict | None                  # the final metrics, once ended
    model_config: ModelConfig
    train_config: TrainConfig

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
    worker: str
    stop_event: object
    pause_until: object                   # a shared double: the worker pauses until this monotonic time
    last_pause: float = 0.0               # how long the last pause asked for was
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
    process: object = None                # its worker process; kept (to read exitcode) after channels go
    channels: object = None               # its _Worker: the queues must live as long as the process
    thread: threading.Thread | None = None
    pump: threading.Thread | None = None  # a process run's: reads its events, then joins (reaps) it
    done: threading.Event = field(default_factory=threading.Event)


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


def _train(model_cfg: ModelConfig, train_cfg: TrainConfig, checkpoint_dir: str, name: str,
           source: str | None, publish, stop) -> None:
    """What a worker does, thread or process: train, save, and always send one 'end' message."""
    from .train import run_training

    try:
        with _pause_points(stop):
            outcome = run_training(model_cfg, train_cfg, [_Publisher(publish)], stop,
                                   checkpoint_dir, name, source)
        metrics = {k: v for k, v in outcome.metrics.items() if k not in ("history", "attention_snapshots")}
        publish({"type": "end", "status": outcome.result.status, "reason": outcome.result.reason,
                 "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None,
                 "summary": metrics})
    except BaseException as error:  # the registry must hear about every way a run ends
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        publish({"type": "end", "status": "failed", "reason": reason or type(error).__name__,
                 "checkpoint": None, "summary": None, "traceback": traceback.format_exc(limit=5)})


class _WorkerFlag:
    """The trainer's stop flag in a worker: set when Stop was pressed or the server is gone.

    It is also how a worker gives way. While the app asks it to (`pause_until`, a time on the
    shared monotonic clock), `wait_while_paused()` sleeps; the trainer's `is_set()` before every
    batch calls it, and so do the pause points inside a step (`_pause_points`). The time slept
    is counted in `paused_seconds`, which the trainer leaves out of its tokens/s.
    """

    def __init__(self, event, pause_until):
        self.event, self.pause_until, self.orphaned = event, pause_until, threading.Event()
        self.paused_seconds = 0.0

    def stop_requested(self) -> bool:
        return self.event.is_set() or self.orphaned.is_set()

    def wait_while_paused(self) -> None:
        """Sleep until the pause asked for has passed, or Stop comes; at once if none was asked."""
        deadline, began = self.pause_until.value, time.monotonic()   # at most 10 s ahead (give_way)
        if began >= deadline:
            return                                 # the usual case: one shared read, one clock read
        while time.monotonic() < deadline and not self.stop_requested():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self.paused_seconds += time.monotonic() - began

    def is_set(self) -> bool:
        self.wait_while_paused()
        return self.stop_requested()


@contextmanager
def _pause_points(flag: _WorkerFlag):
    """Let this thread's training give way mid-step, not only between batches.

    A training step on a busy 2-core machine can take a second, too long for a page that
    wants the CPU now. So while this is open, every module's forward first asks the flag, and
    the backward pass asks again as it reaches each module's output: a pause begins within one
    layer's work. Other threads (a thread worker's server, drawing pages) are left alone, and
    nothing is computed differently: the hooks only ever sleep.
    """
    trainer_thread = threading.get_ident()

    def before_forward(module, args):
        if threading.get_ident() == trainer_thread:
            flag.wait_while_paused()

    def after_forward(module, args, output):
        if threading.get_ident() == trainer_thread and isinstance(output, torch.Tensor) \
                and output.requires_grad:
            output.register_hook(lambda grad: flag.wait_while_paused())   # returns None: grad as is

    handles = [register_module_forward_pre_hook(before_forward), register_module_forward_hook(after_forward)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class _Worker:
    """A worker process and its channels. Started when a run starts, or ahead of it as the spare
    (`RunRegistry.prepare_worker`), in which case the run's settings arrive later on `jobs`."""

    process: object
    jobs: object                          # the one run to train arrives here (None: exit unused)
    messages: object                      # the run's events, back to the registry
    stop_event: object
    pause_until: object                   # shared with the run (see _WorkerFlag)
    ready: object                         # set once its imports are done and it waits for a run
    environ: dict                         # the environment it started with (a spare's may be stale)


def _process_main(jobs, messages, stop_event, pause_until, ready) -> None:
    """The entry point of a worker process (spawned: a fresh interpreter, no inherited state).

    Unpickling this function has already imported torch and minitx; the data libraries are
    imported next, so that a spare started ahead of its run is ready to prepare data at once.
    """
    # Ctrl-C in the server's terminal reaches this process too; the server stops us cleanly instead
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = _WorkerFlag(stop_event, pause_until)
    parent = mp.parent_process()

    def watch_parent():
        while not stop.stop_requested():
            if parent is not None and not parent.is_alive():
                stop.orphaned.set()            # the server died: stop after this step and save
            time.sleep(0.5)

    threading.Thread(target=watch_parent, daemon=True).start()
    import datasets  # noqa: F401  (what prepare_data imports first: about 0.7 s of a cold start)
    ready.set()

    while True:                                # a spare waits here, idle, for its run
        try:
            job = jobs.get(timeout=0.5)
            break
        except queue.Empty:
            if stop.orphaned.is_set():
                return
    if job is None:                            # retired unused: the server is closing, or moved on
        return
    # below the web server in priority, if asked (see WORKER_NICENESS for what that costs the run)
    if job["niceness"] and hasattr(os, "nice"):
        os.nice(job["niceness"])
    _train(ModelConfig.from_dict(job["model"]), TrainConfig.from_dict(job["train"]),
           job["checkpoint_dir"], job["name"], job["source"], messages.put, stop)
    messages.close()
    messages.join_thread()                     # every message is in the pipe before we exit


class RunRegistry:
    """Every run this server started, one training at a time. Thread-safe."""

    def __init__(self, checkpoint_dir: str | os.PathLike = "checkpoints", worker: str = "process",
                 source: str | None = None, niceness: int = WORKER_NICENESS,
                 training_lock: str | os.PathLike | None = None):
        if worker not in WORKERS:
            raise ValueError(f"worker must be one of {', '.join(WORKERS)}, not {worker!r}.")
        if isinstance(niceness, bool) or not isinstance(niceness, int) \
                or not 0 <= niceness <= MAX_WORKER_NICENESS:
            raise ValueError(f"the worker's niceness must be a whole number from 0 (the server's "
                             f"priority) to {MAX_WORKER_NICENESS} (the lowest), not {niceness!r}.")
        self.niceness = niceness
        self.checkpoint_dir = Path(checkpoint_dir)
        self.worker = worker
        self.source = source
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._context = mp.get_context("spawn")
        self._spare: _Worker | None = None
        self._retired: list[_Worker] = []     # kept until they exit: their queues must outlive them
        # one run at a time on the machine, across servers (default_lock_path: a per-user file)
        self.training_lock = TrainingLock(training_lock or default_lock_path())
        self.cleaned = clean_stale_saves(self.checkpoint_dir)
        atexit.register(self.shutdown)

    # -- starting ---------------------------------------------------------------------

    def active(self) -> str | None:
        """The id of the run that is queued, running or stopping, if any."""
        with self._lock:
            return self._active_locked()

    def _active_locked(self) -> str | None:
        for run in self._runs.values():
            if run.status in ACTIVE_STATUSES:
                return run.run_id
        return None

    def busy_reason(self) -> str | None:
        """Why a start now would be refused (naming the run in progress), or None if it would not."""
        with self._lock:
            return self._busy_reason_locked()

    def _busy_reason_locked(self) -> str | None:
        here = self._busy_here_locked()
        if here is not None:
            return here
        elsewhere = self.training_lock.holder()
        return None if elsewhere is None else describe_holder(elsewhere)

    def _busy_here_locked(self) -> str | None:
        """Why a start is refused because of this registry's own run, or None."""
        busy = self._active_locked()
        if busy is None:
            return None
        other = self._runs[busy]
        where = f"step {other.step}/{other.total_steps}" if other.total_steps else other.phase
        return (f"run {other.name} is {other.status} ({where}); only one run trains at a time: "
                f"stop it or wait for it to finish.")

    def start(self, model_cfg: ModelConfig, train_cfg: TrainConfig, name: str | None = None) -> str:
        """Start training in the background and return the run's id; RunBusyError if one is going."""
        model_cfg.validate()
        train_cfg.validate()
        name = check_run_name(name) if name else default_run_name()
        if run_path(self.checkpoint_dir, name).exists():
            raise ValueError(f"a run named {name!r} already exists in {self.checkpoint_dir}; "
                             f"choose another name.")
        with self._lock:
            busy = self._busy_here_locked()
            if busy is not None:
                raise RunBusyError(busy)
            # taking the lock is the check for another server's run (or the command line's)
            elsewhere = self.training_lock.acquire({   # released when the run ends
                "run": name, "pid": os.getpid(), "checkpoints": str(self.checkpoint_dir.resolve()),
                "started": time.time()})
            if elsewhere is not None:
                raise RunBusyError(describe_holder(elsewhere))
            try:
                run_id = f"run-{next(self._ids)}-{name}"
                if self.worker == "process":
                    worker = self._take_spare_locked() or self._new_worker()
                    stop_event, pause_until = worker.stop_event, worker.pause_until
                else:
                    stop_event = threading.Event()
                    pause_until = self._context.Value("d", 0.0, lock=False)   # as a process's, for one code path
                run = _Run(run_id, name, model_cfg, train_cfg, self.worker, stop_event, pause_until)
            except BaseException:                      # no run: the machine is free again
                self.training_lock.release()
                raise
            self._runs[run_id] = run
        try:
            if self.worker == "process":
                self._start_process(run, worker)
            else:
                self._start_thread(run)
        except BaseException as error:   # never leave a run "queued" that no worker will end
            self._apply(run, {"type": "end", "status": "failed", "checkpoint": None, "summary": None,
                              "reason": f"the worker could not start: {type(error).__name__}: {error}"})
            raise
        return run_id

    def prepare_worker(self) -> bool:
        """Start a worker process ahead of the next run (the spare), so that Start does not wait
        for a fresh interpreter to import torch and the data libraries: about 2 s on a 2-core
        machine, before a Quick run's 100 s. True if one was started now.

        Nothing happens for thread workers, while a run is in progress, here or in another
        server (it would take CPU from the training), or when a spare is ready. A spare started
        in another environment than the one a run starts in is not used: `start` starts a fresh
        worker instead.
        """
        with self._lock:
            if self.worker != "process" or self._active_locked() is not None \
                    or (self._spare is not None and self._spare.process.is_alive()) \
                    or self.training_lock.holder() is not None:   # another server's run trains
                return False
            self._spare = self._new_worker()
            self._spare.process.start()
            return True

    def wait_for_spare(self, timeout: float = 8.0) -> bool:
        """Wait, up to timeout seconds, until a spare that is starting has done its imports.

        They keep a core busy for about 2 s, and a training step timed meanwhile comes out about
        twice as long: the Training page's estimate for a Full IMDB preset picked at once said
        10:56 and 12:44 without this wait, 6:17, 5:35 and 5:38 with it (5:51 picked 8 s later).
        True if no spare is starting any more.
        """
        with self._lock:
            spare = self._spare
        if spare is None or not spare.process.is_alive():
            return True
        deadline = time.monotonic() + timeout
        while not spare.ready.wait(0.1):
            if not spare.process.is_alive() or time.monotonic() > deadline:
                return not spare.process.is_alive()
        return True

    def _new_worker(self) -> _Worker:
        """A worker process, not yet started, with fresh channels."""
        jobs, messages = self._context.Queue(), self._context.Queue()
        stop_event, ready = self._context.Event(), self._context.Event()
        pause_until = self._context.Value("d", 0.0, lock=False)    # shared memory
        process = self._context.Process(target=_process_main, name="minitx-worker", daemon=True,
                                        args=(jobs, messages, stop_event, pause_until, ready))
        return _Worker(process, jobs, messages, stop_event, pause_until, ready, dict(os.environ))

    def _take_spare_locked(self) -> _Worker | None:
        """The spare, if it is alive and was started in the environment a run would start in now."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if spare.process.is_alive() and spare.environ == dict(os.environ):
            return spare
        self._retire(spare)
        return None

    def _retire(self, worker: _Worker) -> None:
        """Tell an unused worker to exit (a daemon, it would die with the server anyway)."""
        worker.jobs.put(None)
        self._retired = [w for w in self._retired if w.process.is_alive()] + [worker]

    def _start_process(self, run: _Run, worker: _Worker) -> None:
        run.process, run.channels = worker.process, worker
        if worker.process.pid is None:            # not the spare: start it now
            worker.process.start()
        worker.process.name = f"minitx-{run.name}"
        worker.jobs.put({"model": run.model_config.to_dict(), "train": run.train_config.to_dict(),
                         "checkpoint_dir": str(self.checkpoint_dir), "name": run.name,
                         "source": self.source, "niceness": self.niceness})
        run.pump = threading.Thread(target=self._pump, args=(run, worker.messages), daemon=True,
                                    name=f"minitx-pump-{run.name}")
        run.pump.start()

    def _start_thread(self, run: _Run) -> None:
        def work():
            _train(run.model_config, run.train_config, str(self.checkpoint_dir), run.name,
                   self.source, lambda message: self._apply(run, message),
                   _WorkerFlag(run.stop_event, run.pause_until))

        run.thread = threading.Thread(target=work, daemon=True, name=f"minitx-{run.name}")
        run.thread.start()

    def _pump(self, run: _Run, messages) -> None:
        """Move a worker process's messages into the registry until it ends (or dies)."""
        while not run.done.is_set():
            try:
                message = messages.get(timeout=0.25)
            except queue.Empty:
                if not run.process.is_alive():   # exited and nothing left in the pipe
                    self._apply(run, {"type": "end", "status": "failed", "checkpoint": None,
                                      "summary": None,
                                      "reason": f"the training process ended unexpectedly "
                                                f"(exit code {run.process.exitcode})"})
                continue
            self._apply(run, message)
        run.process.join(timeout=10)
        run.channels = None                    # the worker is gone: its queues can go too

    # -- what workers report ----------------------------------------------------------

    def _apply(self, run: _Run, message: dict) -> None:
        kind = message.get("type")
        with self._lock:
            if run.done.is_set():
                return
            if kind == "phase":
                run.phase = message["phase"]
                if message["phase"] == "training":
                    run.total_steps = message.get("total_steps")
                    run.training_started = time.monotonic()
                    if run.status == "queued":
                        run.status = "running"
            elif kind == "step":
                event = {k: v for k, v in message.items() if k != "type"}
                run.steps.append(event)
                run.step, run.total_steps = event["step"], event["total_steps"]
                run.epoch, run.lr = event["epoch"], event["lr"]
                run.tokens_per_second = event["tokens_per_second"]
            elif kind == "eval":
                run.evals.append({k: v for k, v in message.items() if k != "type"})
            elif kind == "end":
                run.status = message["status"]
                run.reason = message.get("reason")
                run.checkpoint = message.get("checkpoint")
                run.summary = message.get("summary")
                run.phase = "ended"
                run.ended = time.monotonic()
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
                run.run_id, run.name, run.status, run.reason, run.phase, run.worker, run.step,
                run.total_steps, run.epoch, run.train_config.epochs, now - run.started,
                self._eta(run, now), run.tokens_per_second, run.lr, list(run.steps),
                list(run.evals), run.checkpoint, run.summary,
                run.model_config, run.train_config)

    @staticmethod
    def _eta(run: _Run, now: float) -> float | None:
        """Seconds left at the pace so far (evaluations included, since they are in that pace)."""
        if run.status != "running" or not run.step or not run.total_steps or run.training_started is None:
            return None
        per_step = (now - run.training_started) / run.step
        return max(0.0, per_step * (run.total_steps - run.step))

    def stop(self, run_id: str) -> None:
        """Ask a run to stop: it finishes the current step (or evaluation batch), then saves."""
        with self._lock:
            run = self._get(run_id)
            if run.status in ("queued", "running"):
                run.status = "stopping"
                run.stop_event.set()

    def give_way(self, seconds: float = GIVE_WAY_SECONDS) -> bool:
        """Ask the run in progress to pause for `seconds`, starting within one layer's work; False
        if there is none, or if its last pause has not ended or ended less than that pause's
        length ago.

        For the app: on a 2-core machine a page is drawn by the server and then the browser, and
        a worker training at full speed leaves them about one core between them. The pause is
        the worker's own: it sleeps at its next pause point (`_pause_points`: before each module's
        forward, and in the backward pass), and Stop still works while it does. After a
        pause it trains at least as long before the next one, so a learner who keeps clicking
        slows a run down by half at most, and never stops it.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 < seconds <= MAX_GIVE_WAY_SECONDS:
            raise ValueError(f"a run can give way for more than 0 and at most "
                             f"{MAX_GIVE_WAY_SECONDS:g} seconds, not {seconds!r}.")
        with self._lock:
            active = self._active_locked()
            if active is None:
                return False
            run, now = self._runs[active], time.monotonic()
            if now < run.pause_until.value + run.last_pause:
                return False
            run.pause_until.value, run.last_pause = now + seconds, seconds
            return True

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
            if self._spare is not None:
                self._retire(self._spare)
                self._spare = None
            unused = list(self._retired)
        for worker in unused:
            if not worker.ready.is_set():
                # still importing, so it has not read its retire message yet, and has nothing to
                # save: end it now rather than wait out its imports (seconds on a busy machine)
                worker.process.terminate()
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
        deadline = time.monotonic() + timeout
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
            if run.pump is not None:
                # wait for the pump, which joins the worker: not a second join of our own, as two
                # threads joining one process race for its exit status and the loser reads None
                run.pump.join(max(0.1, deadline - time.monotonic()))
                if run.process.is_alive():          # it would not stop
                    run.process.kill()
                    run.pump.join(5)                # a pump still reading sees it dead and reaps it
                    if not run.pump.is_alive():
                        run.process.join(5)         # nobody else joins it now
        self.training_lock.release()           # if a killed run's end was never reported


def format_duration(seconds: float | None) -> str:
    """1:05 or 1:02:03; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
