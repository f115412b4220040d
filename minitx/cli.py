"""`python -m minitx.train`: train on IMDB from the command line, a sentiment encoder or a language model.

    python -m minitx.train --preset quick
    python -m minitx.train --preset quick --n-kv-heads 1 --pos-encoding rope --json
    python -m minitx.train --preset lm-quick --json
    python -m minitx.train --resume my-run [--epochs 5]                       # go on where it stopped
    torchrun --standalone --nproc_per_node 2 -m minitx.train --preset tiny    # several processes

Every field of ModelConfig and TrainConfig has a flag that overrides the
preset, except the three the data decides (vocab_size of the model, pad_id,
n_classes). Ctrl-C once (or SIGTERM) stops after the current step and saves the
run, with what continuing it needs; twice quits at once. --resume continues a
saved run as if it had never stopped; only --epochs (more of them), --threads
and --device may change. Like the app, it trains only when no other run trains
on this machine (`minitx.training_lock`), and says which one does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import typing
from dataclasses import fields
from pathlib import Path

from .arguments import OneLineArgumentParser
from .config import CHOICES, HELP, ModelConfig, TrainConfig
from .checkpoint import check_run_name, named_run
from .data import DataUnavailableError
from .presets import PRESETS
from .train import RESUMABLE_CHANGES, check_run, default_run_name, resolve_device, resume_configs, run_training
from .training_lock import TrainingLock, default_lock_path, describe_holder

# Fields the tokenizer and the dataset decide, so no flag sets them.
DERIVED_MODEL_FIELDS = {"vocab_size", "pad_id", "n_classes"}
def optional_int(text: str) -> int | None:
    if text.lower() in ("all", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', not {text!r}") from None


def _add_field_flags(group, config_class, skip=frozenset()) -> None:
    hints = typing.get_type_hints(config_class)
    for f in fields(config_class):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=HELP.get(f.name))
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind == int | None:
            group.add_argument(flag, type=optional_int, metavar="N", **common)
        elif f.name in CHOICES:
            group.add_argument(flag, choices=CHOICES[f.name], **common)
        else:
            group.add_argument(flag, type=kind, metavar=f.name.upper(), **common)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m minitx.train",
        description="Train a from-scratch transformer on IMDB: a sentiment encoder, or a language model (--preset lm-quick).")
    parser.add_argument("--preset", choices=list(PRESETS), default="quick",
                        help="recipe to start from (default: quick)")
    parser.add_argument("--checkpoint-dir", default="checkpoints",
                        help="where the run folder is created (default: checkpoints/)")
    parser.add_argument("--run-name", default=None, help="run folder name (default: date-time-preset)")
    parser.add_argument("--no-save", action="store_true", help="do not write a checkpoint")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the results as the last line of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="continue a saved run (its name in --checkpoint-dir, or its folder) where it stopped")
    parser.add_argument("--stop-after-steps", type=int, metavar="N", default=None,
                        help="stop after N steps in all and save, so that --resume can go on")
    _add_field_flags(parser.add_argument_group("model (overrides the preset)"), ModelConfig,
                     DERIVED_MODEL_FIELDS)
    _add_field_flags(parser.add_argument_group("training (overrides the preset)"), TrainConfig)
    return parser


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The preset, with every flag the user gave laid over it; ValueError if the mix is impossible."""
    model_cfg, train_cfg = PRESETS[args.preset]
    given = vars(args)
    model_changes = {f.name: given[f.name] for f in fields(ModelConfig) if f.name in given
                     and f.name not in DERIVED_MODEL_FIELDS}
    train_changes = {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given}
    return model_cfg.replace(**model_changes), train_cfg.replace(**train_changes)


class ConsoleProgress:
    """A progress bar per epoch on stderr and a one-line result per epoch on stdout."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar = quiet, None

    def on_step(self, event: dict) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            per_epoch = event["total_steps"] // event["epochs"]
            self.bar = tqdm(total=per_epoch, desc=f"epoch {event['epoch']}/{event['epochs']}",
                            unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{event['loss']:.3f}", lr=f"{event['lr']:.2e}",
                             tok_s=f"{event['tokens_per_second']:.0f}", refresh=False)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def _scores(event: dict) -> list[str]:
        named = (("val_accuracy", "val acc"), ("test_accuracy", "test acc"),
                 ("val_bits_per_char", "val bits/char"), ("test_bits_per_char", "test bits/char"))
        return [f"{label} {event[key]:.4f}" for key, label in named if key in event]

    def on_eval(self, event: dict) -> None:
        """A language model's evaluations come mid-epoch, each with what it writes now."""
        if "sample" in event and not self.quiet:
            if self.bar is not None:
                self.bar.clear()
            print(" | ".join([f"step {event['step']}", *self._scores(event), repr(event["sample"][:100])]),
                  flush=True)

    def on_epoch_end(self, event: dict) -> None:
        self._close_bar()
        parts = [f"epoch {event['epoch']}/{event['epochs']}", f"train loss {event['train_loss']:.4f}",
                 *self._scores(event), f"{event['tokens_per_second']:.0f} tok/s", f"{event['elapsed']:.1f} s"]
        print(" | ".join(parts), flush=True)

    def on_end(self, event: dict) -> None:
        self._close_bar()


def _graceful_interrupt(stop: threading.Event) -> None:
    """First Ctrl-C or SIGTERM: stop after this step and save the run, to be continued. Second: quit now."""

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step and saving (Ctrl-C again to quit at once)...", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _resume_target(args, parser) -> Path | None:
    """The run folder --resume names, or None; a flag that would change the run is refused."""
    if args.resume is None:
        return None
    given = {f.name for f in (*fields(ModelConfig), *fields(TrainConfig)) if f.name in vars(args)}
    changed = sorted(given - set(RESUMABLE_CHANGES) - {"preset"})
    if changed:
        flags = ", ".join("--" + name.replace("_", "-") for name in changed)
        parser.error(f"--resume continues a run as it was: {flags} would make it another run "
                     f"(only --epochs, --threads and --device may change)")
    return named_run(args.resume, args.checkpoint_dir)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resume = _resume_target(args, parser)
        if resume is not None:
            model_cfg, train_cfg = resume_configs(resume, getattr(args, "epochs", None))
            train_cfg = train_cfg.replace(**{k: vars(args)[k] for k in ("threads", "device") if k in vars(args)})
            if args.run_name is not None or args.no_save:
                raise ValueError("--resume saves the run over itself: leave out --run-name and --no-save")
        else:
            model_cfg, train_cfg = configs_from_args(args)
        if args.run_name is not None:
            check_run_name(args.run_name)
        if args.stop_after_steps is not None and args.stop_after_steps < 1:
            raise ValueError(f"--stop-after-steps must be at least 1, not {args.stop_after_steps}")
        resolve_device(train_cfg.device)
        check_run(model_cfg, train_cfg)
    except ValueError as error:
        parser.error(str(error).rstrip("."))

    run_name = resume.name if resume is not None else args.run_name or default_run_name(args.preset)
    checkpoint_dir = None if args.no_save else str(resume.parent) if resume is not None else args.checkpoint_dir
    # under torchrun, rank 0 speaks for the job: it takes the lock, reports and saves
    main_rank = int(os.environ.get("RANK", "0")) == 0
    # one run at a time on this machine, the app's included: two would each train at half speed
    lock = TrainingLock(default_lock_path())
    try:
        holder = lock.acquire({"run": run_name, "pid": os.getpid(), "by": "command-line",
                               "started": time.time(),
                               "checkpoints": str(Path(checkpoint_dir).resolve()) if checkpoint_dir else None}
                              ) if main_rank else None
    except ValueError as error:       # the lock file cannot be opened
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    if holder is not None:
        print(f"{parser.prog}: error: not started: {describe_holder(holder)}", file=sys.stderr)
        return 1
    stop = threading.Event()
    _graceful_interrupt(stop)
    try:
        outcome = run_training(model_cfg, train_cfg, callbacks=[ConsoleProgress(args.quiet)], stop=stop,
                               checkpoint_dir=checkpoint_dir, run_name=run_name, resume=resume,
                               stop_after_steps=args.stop_after_steps)
    except DataUnavailableError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; nothing was saved.", file=sys.stderr)
        return 130
    finally:
        lock.release()

    metrics = outcome.metrics
    if not main_rank:
        return 1 if metrics["status"] == "failed" else 0
    if metrics["status"] == "failed":
        print(f"run failed: {metrics['reason']}", file=sys.stderr)
    else:
        where = f"saved to {outcome.checkpoint}" if outcome.checkpoint else "not saved"
        note = f" ({metrics['reason']})" if metrics["reason"] else ""
        print(f"{metrics['status']}{note}: {describe_score(metrics)}; {where}", flush=True)
    if args.json:
        keys = (("val_bits_per_char", "val_perplexity", "test_bits_per_char", "test_perplexity", "test_loss",
                 "baselines", "sample", "train_tokens") if model_cfg.is_lm else ("test_accuracy", "val_accuracy"))
        summary = {k: metrics.get(k) for k in ("status", "reason", *keys, "train_size", "val_size", "test_size",
                                                "epochs", "steps", "tokens_per_second", "parameters", "device",
                                                "processes")}
        summary.update(preset=args.preset, wall_seconds=round(time.perf_counter() - started, 2),
                       checkpoint=str(outcome.checkpoint) if outcome.checkpoint else None)
        print(json.dumps(summary), flush=True)
    return 1 if metrics["status"] == "failed" else 0


def describe_score(metrics: dict) -> str:
    """The run's result in words: what it scored on what, chosen how, against what."""
    if metrics.get("test_bits_per_char") is not None:
        base = metrics.get("baselines") or {}
        beside = ", ".join(f"{name} {base[name]:.2f}" for name in ("unigram", "zlib", "bz2", "xz") if name in base)
        return (f"{metrics['test_bits_per_char']:.3f} bits per character on {metrics['test_subset']}"
                f" ({beside}), chosen on validation; it writes: {metrics.get('sample', '')[:200]!r}")
    if metrics.get("test_accuracy") is None:
        return "no evaluation happened yet"
    return (f"test accuracy {metrics['test_accuracy']:.4f} on the {metrics['test_subset']}"
            + (f", chosen on validation (val acc {metrics['val_accuracy']:.4f})"
               if metrics.get("val_accuracy") is not None else ""))
