"""The training loop: nothing too scary, just a careful one, the same for every task.

`Trainer` knows nothing about pages, terminals or what is being learnt. The
task (`ClassificationTask`, `LanguageModelTask`) says what a batch is, what
its loss is, how to evaluate and which evaluation is better; the trainer
does the rest and fires named events, each a dict of plain numbers, to any
callback object that has a method of that name:

    on_step       after every optimiser step: loss, learning rate, tokens/s, step/total
    on_eval       after every evaluation: the task's validation and test metrics
    on_epoch_end  after every epoch
    on_end        once, with the status: finished, stopped or failed (and why)

The recipe: AdamW; learning rate warmed up linearly, then cosine decay to a floor;
gradient-norm clipping; evaluation at every epoch end (and every `eval_every`
steps). Model selection and early stopping look at the validation split only:
the reported test score is that of the model chosen on validation.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from .distributed import Distributed
from .resume import Position, ResumeState, random_states, set_random_states

EVENTS = ("on_phase", "on_step", "on_eval", "on_epoch_end", "on_end")
# what an evaluation event holds besides the task's metrics
EVAL_BOOKKEEPING = ("step", "epoch", "elapsed", "best")


def notify(callbacks: Iterable, name: str, event: dict) -> None:
    """Call `name(event)` on every callback that has such a method."""
    for callback in callbacks:
        handler = getattr(callback, name, None)
        if handler is not None:
            handler(event)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine",
                  min_fraction: float = 0.0) -> float:
    """The factor on the peak learning rate at step t (0: the first optimiser step).

        t < warmup:   t / warmup                                  a linear warmup from 0
        after:        floor + (1 - floor) * (1 + cos(pi * p)) / 2  p from 0 at the warmup's end to 1 at the
                                                                   last step: a cosine from 1 down to the floor
    (or 1 throughout the "constant" schedule). The usual schedule of LLM training (nanoGPT's get_lr,
    CS336's get_lr_cosine_schedule with min_lr = floor x max_lr).
    """
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_fraction + (1.0 - min_fraction) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_schedule(cfg: TrainConfig, total_steps: int) -> list[float]:
    """The learning rate of every step of a run, as the trainer will set it (for a chart before Start)."""
    warmup = round(cfg.warmup_fraction * total_steps)
    return [cfg.lr * lr_multiplier(step, total_steps, warmup, cfg.lr_schedule, cfg.min_lr_fraction)
            for step in range(total_steps)]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW that decays the matrices (and the embedding table), not biases or norm gains.

    Fused on a CPU or a GPU: one pass over each parameter per step instead of a dozen, the
    same arithmetic (tests/test_train.py holds it equal to the plain loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


class Task(Protocol):
    """What the trainer needs to know about what it trains."""

    def steps_per_epoch(self, batch_size: int) -> int: ...

    def batches(self, epoch: int, batch_size: int) -> list: ...

    def loss(self, model: torch.nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, int]:
        """The loss to minimise on one batch, and how many real tokens the batch holds."""

    def evaluate(self, model: torch.nn.Module, device: torch.device, stop=None) -> tuple[dict, object] | None:
        """Validation and test metrics (plain numbers), and anything to keep with the best
        evaluation; None when a stop request cut it short."""

    def better(self, event: dict, best: dict | None) -> bool:
        """Whether this evaluation beats the best so far, on the validation split."""


def pinned(batch):
    """A batch in page-locked memory, so that its copy to the GPU overlaps with computing."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    return dataclasses.replace(batch, ids=batch.ids.pin_memory(), labels=batch.labels.pin_memory())


def scores(event: dict) -> dict:
    """The metrics of an evaluation event, without its bookkeeping."""
    return {k: v for k, v in event.items() if k not in EVAL_BOOKKEEPING and not isinstance(v, str)}


@dataclass
class TrainResult:
    status: str                      # finished | stopped | failed
    reason: str | None
    best: dict | None                # the evaluation event chosen on validation
    history: dict                    # {"steps": [...], "evals": [...], "epochs": [...]}
    steps: int
    train_seconds: float
    tokens_per_second: float
    kept: object = None              # what the task kept with the chosen evaluation
    resume: ResumeState | None = None  # what continuing the run needs (None if it failed)

    @property
    def test_accuracy(self) -> float | None:
        return self.best.get("test_accuracy") if self.best else None


class Trainer:
    """Trains a model on a task, fires events, honours a stop flag within one step.

    The stop flag is anything with `is_set()`: a threading or a multiprocessing Event. Under
    torchrun (`distributed`), each rank trains on its share of the batches through
    DistributedDataParallel (minitx.train.distributed says how the ranks stay in step). On a
    GPU, `cfg.precision` bf16 or fp16 runs the forward pass in autocast (fp16 with a gradient
    scaler), and batches are copied from pinned memory without blocking.
    """

    def __init__(self, model: torch.nn.Module, task: Task, cfg: TrainConfig, device: torch.device,
                 callbacks: Iterable = (), stop=None, distributed: Distributed | None = None):
        self.model, self.task, self.cfg, self.device = model.to(device), task, cfg, device
        self.callbacks = list(callbacks)
        self.stop = stop
        self.distributed = distributed
        self.train_model = self.model      # what the training step calls: the DDP wrapper, if any
        if distributed is not None:        # an expert no token went to on one rank has no gradient there
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=getattr(model.cfg, "ffn", None) == "moe")
        self.steps_per_epoch = task.steps_per_epoch(cfg.batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError("the training split is empty.")
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)
                         if cfg.precision != "fp32" else contextlib.nullcontext())
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = round(cfg.warmup_fraction * self.total_steps)
        self.optimizer = make_optimizer(self.model, cfg.lr, cfg.weight_decay, device)
        self.history = {"steps": [], "evals": [], "epochs": []}

    def _emit(self, name: str, event: dict) -> None:
        notify(self.callbacks, name, event)

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _train_step(self, batch, lr: float) -> tuple[float, int, bool]:
        """One optimiser step; returns the loss (not finite: no step was taken), the real tokens
        (of every rank) and whether to stop now (no step was taken either)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            loss, n_tokens = self.task.loss(self.train_model, batch, self.device)
        value, stop = loss.item(), False
        if self.distributed is not None:       # every rank takes the same decision, or one would wait forever
            agreed = self.distributed.sum(torch.tensor(
                [float(self._stop_requested()), float(not math.isfinite(value)), float(n_tokens)]))
            stop, n_tokens = bool(agreed[0]), int(agreed[2])
            value = float("nan") if agreed[1] and math.isfinite(value) else value   # another rank's was not finite
        if stop or not math.isfinite(value):
            return value, n_tokens, stop
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:            # fp16: scale the loss so small gradients do not vanish
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return value, n_tokens, False

    def _epoch_summary(self, epoch: int, step: int, start: float, train_tokens: int, train_seconds: float) -> dict:
        losses = [event["loss"] for event in self.history["steps"] if event["epoch"] == epoch + 1]
        return {"epoch": epoch + 1, "epochs": self.cfg.epochs, "step": step,
                "train_loss": sum(losses) / max(1, len(losses)), **scores(self.history["evals"][-1]),
                "tokens_per_second": round(train_tokens / max(train_seconds, 1e-9), 1),
                "elapsed": round(time.perf_counter() - start, 3)}

    def _restore(self, resume: ResumeState) -> None:
        """The model, optimizer, scaler and random generators as they were when the run stopped."""
        self.model.load_state_dict(resume.weights)
        self.optimizer.load_state_dict(resume.optimizer)
        if self.scaler is not None and resume.scaler:
            self.scaler.load_state_dict(resume.scaler)
        set_random_states(resume.rng)

    def _capture(self, position: Position) -> ResumeState:
        """What continuing needs, taken before the chosen weights replace the model's."""
        return ResumeState(position, {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                           self.optimizer.state_dict(), random_states(),
                           self.scaler.state_dict() if self.scaler is not None else None)

    def fit(self, resume: ResumeState | None = None, stop_after_steps: int | None = None) -> TrainResult:
        """Train to the end, or to a stop: a stop request, or stop_after_steps steps taken in all. With
        `resume`, go on from where that run stopped, as if it never had (self.history must then hold
        its history)."""
        cfg, model = self.cfg, self.model
        model.train()
        at = resume.position if resume is not None else Position()
        start = time.perf_counter() - at.elapsed
        train_seconds, train_tokens, step = at.train_seconds, at.train_tokens, at.step
        status, reason = "finished", None
        best, best_state, best_kept = at.best, None, None
        if resume is not None:
            best_state, best_kept = resume.best_weights, resume.kept
            self._restore(resume)
        epochs_without_improvement = at.epochs_without_improvement
        position = Position(**{**vars(at), "pending_eval": None})

        def record_eval(epoch_position: float) -> bool | None:
            """Evaluate and keep the model if validation says it is the best; None if stopped."""
            nonlocal best, best_state, best_kept
            evaluated = self.task.evaluate(model, self.device, self.stop)
            if evaluated is None:
                return None
            metrics, kept = evaluated
            event = {"step": step, "epoch": round(epoch_position, 4),
                     "elapsed": round(time.perf_counter() - start, 3), **metrics}
            event["best"] = self.task.better(event, best)
            if event["best"]:
                best, best_kept = event, kept
                best_state = copy.deepcopy(model.state_dict())
            self.history["evals"].append(event)
            self._emit("on_eval", event)
            return event["best"]

        def end_epoch(epoch: int, improved: bool) -> str | None:
            """The epoch's summary, and the reason to stop early, if there is one."""
            nonlocal epochs_without_improvement
            epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
            summary = self._epoch_summary(epoch, step, start, train_tokens, train_seconds)
            self.history["epochs"].append(summary)
            self._emit("on_epoch_end", summary)
            if cfg.patience and epochs_without_improvement >= cfg.patience and epoch + 1 < cfg.epochs:
                return (f"stopped early after epoch {epoch + 1}: the validation score "
                        f"did not improve for {cfg.patience} epoch(s)")
            return None

        pending = at.pending_eval
        if pending is None and resume is None and getattr(self.task, "evaluate_at_start", False):
            pending = {"epoch_position": 0, "epoch_end": False}
        if pending is not None:          # an evaluation due before the next step (one a stop cut short)
            improved = record_eval(pending["epoch_position"])
            if improved is None:
                status, reason = "stopped", f"stopped by request at step {step}, during an evaluation"
                position.pending_eval = pending
            elif pending["epoch_end"]:
                reason = end_epoch(at.epoch - 1, improved)
        first_epoch = cfg.epochs if status != "finished" or reason else at.epoch
        for epoch in range(first_epoch, cfg.epochs):
            batches = self.task.batches(epoch, cfg.batch_size)
            if self.distributed is not None:
                batches = self.distributed.share(batches)
            for index in range(at.batch if epoch == at.epoch else 0, len(batches)):
                position.epoch, position.batch = epoch, index       # the next batch to take
                if (self.distributed is None and self._stop_requested()) or \
                        (stop_after_steps is not None and step >= stop_after_steps):
                    status, reason = "stopped", f"stopped by request at step {step}"
                    break
                tick = time.perf_counter()
                lr = cfg.lr * lr_multiplier(step, self.total_steps, self.warmup_steps, cfg.lr_schedule,
                                            cfg.min_lr_fraction)
                batch = pinned(batches[index]) if self.device.type == "cuda" else batches[index]
                loss_value, n_tokens, stop = self._train_step(batch, lr)
                if stop:
                    status, reason = "stopped", f"stopped by request at step {step}"
                    break
                if not math.isfinite(loss_value):
                    status = "failed"
                    reason = (f"the loss became {loss_value} at step {step + 1} (learning rate "
                              f"{lr:.3g}); lower the learning rate"
                              + (" or turn gradient clipping on." if cfg.grad_clip == 0 else "."))
                    break
                step += 1
                position.step, position.batch = step, index + 1
                train_seconds += time.perf_counter() - tick
                train_tokens += n_tokens
                event = {"step": step, "total_steps": self.total_steps, "epoch": epoch + 1,
                         "epochs": cfg.epochs, "loss": loss_value, "lr": lr,
                         "tokens_per_second": round(train_tokens / max(train_seconds, 1e-9), 1),
                         "elapsed": round(time.perf_counter() - start, 3)}
                self.history["steps"].append(event)
                self._emit("on_step", event)
                mid_epoch = index + 1 < len(batches)
                if cfg.eval_every and step % cfg.eval_every == 0 and mid_epoch:
                    epoch_position = epoch + (index + 1) / len(batches)
                    if record_eval(epoch_position) is None:
                        status, reason = "stopped", f"stopped by request at step {step}, during an evaluation"
                        position.pending_eval = {"epoch_position": epoch_position, "epoch_end": False}
                        break
            if status != "finished":
                break
            position.epoch, position.batch = epoch + 1, 0
            improved = record_eval(epoch + 1)
            if improved is None:
                status, reason = "stopped", f"stopped by request at step {step}, during an evaluation"
                position.pending_eval = {"epoch_position": epoch + 1, "epoch_end": True}
                break
            reason = end_epoch(epoch, improved)
            if reason:
                break

        position.epochs_without_improvement = epochs_without_improvement
        position.elapsed, position.train_seconds, position.train_tokens = (
            time.perf_counter() - start, train_seconds, train_tokens)
        position.best = best
        resume_state = None
        if status != "failed":
            resume_state = self._capture(position)
            resume_state.kept = best_kept if isinstance(best_kept, torch.Tensor) else None
        if best_state is not None and status != "failed":
            model.load_state_dict(best_state)     # model selection: keep the validation-best weights
        if status == "failed":
            best, best_kept = None, None
        result = TrainResult(status, reason, best, self.history, step, train_seconds,
                             train_tokens / max(train_seconds, 1e-9), best_kept, resume_state)
        self._emit("on_end", {"status": status, "reason": reason, "steps": step,
                              "total_steps": self.total_steps, **scores(best or {}),
                              "best_step": best["step"] if best else None,
                              "tokens_per_second": round(result.tokens_per_second, 1),
                              "elapsed": round(time.perf_counter() - start, 3)})
        return result
