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
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from ..checkpoint import save_run
from ..config import ModelConfig, TrainConfig
from ..model import build_model, count_parameters
from ..tokenizer import PAD_ID, Tokenizer
from . import distributed as multi
from .classify import (ClassificationTask, apply_word_dropout, confidently_wrong, confusion_matrix,
                       evaluate)
from .language import LanguageModelTask
from .loop import EVENTS, Trainer, TrainResult, lr_multiplier, notify, scores

__all__ = ["EVENTS", "ClassificationTask", "LanguageModelTask", "RunOutcome", "TrainResult", "Trainer",
           "apply_word_dropout", "check_run", "confidently_wrong", "confusion_matrix", "default_run_name",
           "evaluate", "lr_multiplier", "notify", "resolve_device", "run_training"]

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


def run_training(model_cfg: ModelConfig, train_cfg: TrainConfig, callbacks: Iterable = (),
                 stop=None, checkpoint_dir: str | os.PathLike | None = "checkpoints",
                 run_name: str | None = None, source: str | None = None, notes: dict | None = None) -> RunOutcome:
    """Everything a run needs, in order; the model is saved unless the run failed or never stepped.
    `notes` are kept with its metrics (which of its functions a learner wrote, say).

    Under torchrun (minitx.train.distributed) every rank runs this; rank 0 alone hears the
    callbacks and saves, and the others return an outcome without a checkpoint."""
    wall_start = time.perf_counter()
    ranks = multi.from_environment(train_cfg.device)
    try:
        return _run(model_cfg, train_cfg, list(callbacks), stop, checkpoint_dir, run_name, source, ranks,
                    wall_start, notes or {})
    finally:
        if ranks is not None:
            ranks.close()


def _run(model_cfg, train_cfg, callbacks, stop, checkpoint_dir, run_name, source, ranks, wall_start,
         notes) -> RunOutcome:
    world = ranks.world_size if ranks else 1
    torch.set_num_threads(train_cfg.threads or max(1, available_cores() // world))
    device = ranks.device if ranks else resolve_device(train_cfg.device)
    if ranks is not None and not ranks.is_main:
        callbacks, checkpoint_dir = [], None        # rank 0 reports and saves for all
    notify(callbacks, "on_phase", {"phase": "preparing data"})
    with ranks.main_first() if ranks else contextlib.nullcontext():   # one tokenizer, trained once
        task = (LanguageModelTask if model_cfg.is_lm else ClassificationTask).prepare(model_cfg, train_cfg, source)
    task.distributed = ranks
    # the tokenizer decides the vocabulary size the embedding table needs
    model_cfg = model_cfg.replace(vocab_size=task.tokenizer.vocab_size, pad_id=PAD_ID)
    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg)
    trainer = Trainer(model, task, train_cfg, device, callbacks, stop, ranks)
    trainer.callbacks[:0] = task.recorders(model, trainer.total_steps)   # they see each step first
    notify(callbacks, "on_phase", {"phase": "training", "total_steps": trainer.total_steps})
    result = trainer.fit()
    wall_seconds = time.perf_counter() - wall_start

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
                              task.tokenizer, metrics)
    return RunOutcome(result, metrics, checkpoint, model, task.tokenizer)
