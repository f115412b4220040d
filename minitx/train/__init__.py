"""Training: one loop (`loop.Trainer`), two tasks, and `run_training`, which puts a run together.

    from minitx.train import run_training
    outcome = run_training(model_cfg, train_cfg)          # data, tokenizer, model, loop, checkpoint

The task follows `model_cfg.task`: "classify" (`classify.ClassificationTask`,
IMDB sentiment) or "lm" (`language.LanguageModelTask`, next-token prediction
on IMDB's text). `run_training` adds the `on_phase` event ("preparing data",
"training", "saving") to the loop's events. `python -m minitx.train` is the
command line (`minitx.cli`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from ..checkpoint import MODEL_FILE, TOKENIZER_FILE, read_metrics, read_run_configs, save_run
from ..config import ModelConfig, TrainConfig
from ..model import build_model, count_parameters
from ..tokenizer import PAD_ID, Tokenizer
from . import distributed as multi
from .classify import (ClassificationTask, apply_word_dropout, confidently_wrong, confusion_matrix,
                       evaluate)
from .language import LanguageModelTask
from .loop import EVENTS, Trainer, TrainResult, lr_multiplier, lr_schedule, notify, scores
from .resume import can_resume, read_resume_state

__all__ = ["EVENTS", "RESUMABLE_CHANGES", "ClassificationTask", "LanguageModelTask", "RunOutcome", "TrainResult",
           "Trainer", "apply_word_dropout", "can_resume", "check_run", "check_same_run", "confidently_wrong",
           "confusion_matrix", "default_run_name", "evaluate", "lr_multiplier", "lr_schedule", "notify",
           "resolve_device", "resume_configs", "run_training"]

IMDB_SPLIT_SIZE = 25_000          # reviews in each of IMDB's labelled splits, train and test
LM_POOL_SIZE = 75_000             # what a language model reads: the unlabelled 50,000 and train's 25,000


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def memory_bytes() -> int | None:
    """This machine's physical memory, where the platform says (Linux, macOS)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_run(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """What each config alone cannot tell, checked before any data is read: the subsets fit in
    IMDB, a classifier's subsets are balanced, and the model fits in this machine's memory to
    train. ValueError if not."""
    largest = {"train_size": LM_POOL_SIZE if model_cfg.is_lm else IMDB_SPLIT_SIZE, "test_size": IMDB_SPLIT_SIZE}
    for name, most in largest.items():
        size = getattr(train_cfg, name)
        if size is not None and size > most:
            raise ValueError(f"{name} {size:,} is more than the {most:,} reviews there are; "
                             f"use 'all' (or None) for all of them.")
        if size is not None and size % 2 and not model_cfg.is_lm:
            raise ValueError(f"{name} {size} is odd: a balanced subset takes half from each class.")
    if train_cfg.precision == "fp16" and resolve_device(train_cfg.device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU (its gradients need a scaler built for one); "
                         "on the CPU use bf16 or fp32.")
    with torch.device("meta"):                 # shapes only: no memory is taken
        model = build_model(model_cfg.replace(vocab_size=max(model_cfg.vocab_size, train_cfg.vocab_size)))
    parameters = count_parameters(model)
    needed = parameters * 16                   # weights, gradients and AdamW's two moments, float32
    available = memory_bytes()
    if available is not None and needed > available:
        raise ValueError(f"this model has {parameters:,} parameters: training it needs about "
                         f"{needed / 2**30:,.1f} GiB of memory, more than this machine's "
                         f"{available / 2**30:,.1f} GiB. Make it smaller (d_model, d_ff, n_layers, vocab_size).")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when PyTorch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but PyTorch sees no CUDA device; use cpu or auto.")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}.")
    return torch.device(name)


def default_run_name(label: str = "run") -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{label}"


@dataclass
class RunOutcome:
    result: TrainResult
    metrics: dict
    checkpoint: Path | None
    model: torch.nn.Module
    tokenizer: Tokenizer


# what a continued run may change: more epochs, and where it runs; anything else makes it another run
RESUMABLE_CHANGES = ("epochs", "threads", "device")


def resume_configs(path: str | os.PathLike, epochs: int | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The configs to continue the run in `path` with (ValueError, one sentence, if it cannot be):
    its own, with `epochs` raised if given."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"there is no run named {path.name!r} in {path.parent} to continue.")
    model_cfg, train_cfg = read_run_configs(path)
    metrics = read_metrics(path)
    read_resume_state(path, path / MODEL_FILE)          # says what is missing before any data is read
    if epochs is not None:
        train_cfg = train_cfg.replace(epochs=epochs)
    if metrics.get("status") == "finished" and train_cfg.epochs <= int(metrics.get("epochs") or 0):
        raise ValueError(f"run {path.name} finished all its {metrics.get('epochs')} epoch(s): continue it "
                         f"with more epochs (--epochs {int(metrics.get('epochs') or 0) + 1} or more).")
    return model_cfg, train_cfg


def check_same_run(path: Path, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """ValueError naming the first setting that differs from the saved run's (other than RESUMABLE_CHANGES)."""
    saved_model, saved_train = read_run_configs(path)
    for saved, given in ((saved_model, model_cfg), (saved_train, train_cfg)):
        for name, value in given.to_dict().items():
            if name not in RESUMABLE_CHANGES and value != getattr(saved, name):
                raise ValueError(f"run {path.name} was trained with {name} {getattr(saved, name)!r}: continuing "
                                 f"it with {value!r} would make it another run (start a new one instead).")
    if train_cfg.epochs < saved_train.epochs:
        raise ValueError(f"run {path.name} was set to {saved_train.epochs} epochs; it can be continued for "
                         f"more, not fewer ({train_cfg.epochs}).")


def run_training(model_cfg: ModelConfig, train_cfg: TrainConfig, callbacks: Iterable = (),
                 stop=None, checkpoint_dir: str | os.PathLike | None = "checkpoints",
                 run_name: str | None = None, source: str | None = None, notes: dict | None = None,
                 resume: str | os.PathLike | None = None, stop_after_steps: int | None = None,
                 swaps: dict | None = None) -> RunOutcome:
    """Everything a run needs, in order; the model is saved, with what continuing it needs, unless
    the run failed or never stepped. `notes` are kept with its metrics (which of its functions a
    learner wrote, say); `swaps` are functions at the model's swap points for the whole run
    (minitx.swaps). `resume` is a saved run's folder to continue (its configs, but for
    RESUMABLE_CHANGES, must be these): it is saved over itself. stop_after_steps stops (and saves)
    once that many steps are taken in all.

    Under torchrun (minitx.train.distributed) every rank runs this; rank 0 alone hears the
    callbacks and saves, and the others return an outcome without a checkpoint."""
    wall_start = time.perf_counter()
    ranks = multi.from_environment(train_cfg.device)
    if resume is not None:
        if ranks is not None:
            raise ValueError("a run is continued in one process; torchrun cannot continue it.")
        resume = Path(resume)
        check_same_run(resume, model_cfg, train_cfg)
        checkpoint_dir, run_name = resume.parent, resume.name
    try:
        return _run(model_cfg, train_cfg, list(callbacks), stop, checkpoint_dir, run_name, source, ranks,
                    wall_start, notes or {}, resume, stop_after_steps, swaps or {})
    finally:
        if ranks is not None:
            ranks.close()


def _run(model_cfg, train_cfg, callbacks, stop, checkpoint_dir, run_name, source, ranks, wall_start,
         notes, resume, stop_after_steps, swaps) -> RunOutcome:
    world = ranks.world_size if ranks else 1
    torch.set_num_threads(train_cfg.threads or max(1, available_cores() // world))
    device = ranks.device if ranks else resolve_device(train_cfg.device)
    if ranks is not None and not ranks.is_main:
        callbacks, checkpoint_dir = [], None        # rank 0 reports and saves for all
    saved = None
    if resume is not None:                          # a continued run: its own tokenizer, state and history
        saved = {"state": read_resume_state(resume, resume / MODEL_FILE), "metrics": read_metrics(resume),
                 "tokenizer": Tokenizer.load(resume / TOKENIZER_FILE)}
    notify(callbacks, "on_phase", {"phase": "preparing data"})
    with ranks.main_first() if ranks else contextlib.nullcontext():   # one tokenizer, trained once
        task = (LanguageModelTask if model_cfg.is_lm else ClassificationTask).prepare(
            model_cfg, train_cfg, source, saved["tokenizer"] if saved else None)
    task.distributed = ranks
    # the tokenizer decides the vocabulary size the embedding table needs
    model_cfg = model_cfg.replace(vocab_size=task.tokenizer.vocab_size, pad_id=PAD_ID)
    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg)
    model.swaps.use(**swaps)
    trainer = Trainer(model, task, train_cfg, device, callbacks, stop, ranks)
    recorders = task.recorders(model, trainer.total_steps)
    if saved is not None:
        trainer.history = copy.deepcopy(saved["metrics"].get("history") or trainer.history)
        snapshots = saved["metrics"].get("attention_snapshots")
        for recorder in recorders if snapshots else ():
            recorder.restore(snapshots)
    trainer.callbacks[:0] = recorders                                      # they see each step first
    notify(callbacks, "on_phase", {"phase": "training", "total_steps": trainer.total_steps,
                                   "step": saved["state"].position.step if saved else 0})
    result = trainer.fit(saved["state"] if saved else None, stop_after_steps)
    wall_seconds = time.perf_counter() - wall_start
    if saved is not None:                           # a continued run's time is that of both parts
        wall_seconds += saved["metrics"].get("wall_seconds") or 0

    best = result.best or {}
    metrics = {
        "status": result.status, "reason": result.reason, "task": model_cfg.task,
        **scores(best), "best_step": best.get("step"), "best_epoch": best.get("epoch"),
        **task.sizes(), "epochs": train_cfg.epochs, "steps": result.steps,
        "wall_seconds": round(wall_seconds, 2), "train_seconds": round(result.train_seconds, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "parameters": count_parameters(model), "device": str(device), "processes": world,
        "threads": torch.get_num_threads(), "created": datetime.now().isoformat(timespec="seconds"),
        **(task.report(model, result.kept) if result.status != "failed" else {}),
        **notes, "history": result.history,
    }
    for name in ("test_accuracy", "val_accuracy") if not model_cfg.is_lm else ():
        metrics.setdefault(name, None)           # never evaluated: said, not missing
    checkpoint = None
    # a failed model is not worth keeping, and one stopped before its first step learned nothing
    if checkpoint_dir is not None and result.status != "failed" and result.steps > 0:
        notify(callbacks, "on_phase", {"phase": "saving"})
        checkpoint = save_run(checkpoint_dir, run_name or default_run_name(), model, train_cfg,
                              task.tokenizer, metrics, result.resume, replace=saved is not None)
    return RunOutcome(result, metrics, checkpoint, model, task.tokenizer)
