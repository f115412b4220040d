"""The training loop: nothing too scary, just a careful one.

`Trainer` knows nothing about pages or terminals. It fires named events,
each a dict of plain numbers, to any callback object that has a method of
that name:

    on_step       after every optimiser step: loss, learning rate, tokens/s, step/total
    on_eval       after every evaluation: validation and test loss and accuracy
    on_epoch_end  after every epoch
    on_end        once, with the status: finished, stopped or failed (and why)

`run_training` adds `on_phase` ("preparing data", "training", "saving") and
records an attention snapshot of one fixed test review as the model learns.

The recipe: AdamW; learning rate warmed up linearly, then cosine decay;
gradient-norm clipping; a validation split carved from the training subset;
evaluation at every epoch end (and every `eval_every` steps). Model selection
and early stopping look at the validation split only: the reported test
accuracy is that of the model chosen on validation, never the best test score.

`run_training` puts it together: data, tokenizer, model, loop, checkpoint.
The command line lives in `minitx.cli`; `python -m minitx.train` runs it.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import save_run
from ..config import ModelConfig, TrainConfig
from ..data import (EncodedSplit, evaluation_batches, encode_split, imdb_subsets,
                   training_batches)
from ..encoder import SentimentClassifier, count_parameters
from ..snapshots import AttentionSnapshots, pick_review
from ..tokenizer import PAD_ID, UNK_ID, CLS_ID, Tokenizer, cached_tokenizer

IMDB_SPLIT_SIZE = 25_000          # reviews in each of IMDB's labelled splits, train and test
EVENTS = ("on_phase", "on_step", "on_eval", "on_epoch_end", "on_end")


def notify(callbacks: Iterable, name: str, event: dict) -> None:
    """Call `name(event)` on every callback that has such a method."""
    for callback in callbacks:
        handler = getattr(callback, name, None)
        if handler is not None:
            handler(event)


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
    IMDB's splits, and the model fits in this machine's memory to train. ValueError if not."""
    for name in ("train_size", "test_size"):
        size = getattr(train_cfg, name)
        if size is not None and size > IMDB_SPLIT_SIZE:
            raise ValueError(f"{name} {size:,} is more than the {IMDB_SPLIT_SIZE:,} reviews of IMDB's "
                             f"split; use 'all' (or None) for all of them.")
    with torch.device("meta"):                 # shapes only: no memory is taken
        model = SentimentClassifier(model_cfg.replace(vocab_size=max(model_cfg.vocab_size,
                                                                     train_cfg.vocab_size)))
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


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine") -> float:
    """The factor on the peak learning rate at a step: linear warmup, then cosine to 0 (or flat)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def apply_word_dropout(ids: torch.Tensor, rate: float, generator=None) -> torch.Tensor:
    """Replace a random share of real tokens by [UNK], so no single word can carry a review."""
    if rate <= 0:
        return ids
    hit = torch.rand(ids.shape, generator=generator, device=ids.device) < rate
    hit &= (ids != PAD_ID) & (ids != CLS_ID)
    return ids.masked_fill(hit, UNK_ID)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    probabilities: torch.Tensor   # (N, C), rows in the split's order


@torch.inference_mode()
def evaluate(model: SentimentClassifier, batches: Sequence, n_rows: int,
             device: torch.device, stop=None) -> Evaluation | None:
    """Mean cross-entropy and accuracy over a whole split; the model is put in eval mode.

    With a stop flag that gets set part-way, it gives up and returns None.
    """
    was_training = model.training
    model.eval()
    probabilities = torch.zeros(n_rows, model.cfg.n_classes)
    labels = torch.zeros(n_rows, dtype=torch.long)
    total_loss = 0.0
    for batch in batches:
        if stop is not None and stop.is_set():
            model.train(was_training)
            return None
        logits = model(batch.ids.to(device)).float().cpu()                  # (B, C)
        total_loss += F.cross_entropy(logits, batch.labels, reduction="sum").item()
        probabilities[batch.rows] = logits.softmax(-1)
        labels[batch.rows] = batch.labels
    model.train(was_training)
    accuracy = (probabilities.argmax(-1) == labels).float().mean().item()
    return Evaluation(total_loss / max(1, n_rows), accuracy, probabilities)


@dataclass
class TrainResult:
    status: str                      # finished | stopped | failed
    reason: str | None
    best: dict | None                # the evaluation event chosen on validation
    history: dict                    # {"steps": [...], "evals": [...], "epochs": [...]}
    steps: int
    train_seconds: float
    tokens_per_second: float
    test_probabilities: torch.Tensor | None = None   # of the chosen model, (N_test, C)

    @property
    def test_accuracy(self) -> float | None:
        return self.best["test_accuracy"] if self.best else None


class Trainer:
    """Trains a model on prepared splits, fires events, honours a stop flag within one step.

    The stop flag is anything with `is_set()`: a threading or a multiprocessing Event.
    """

    def __init__(self, model: SentimentClassifier, cfg: TrainConfig, train: EncodedSplit,
                 val: EncodedSplit, test: EncodedSplit, device: torch.device,
                 callbacks: Iterable = (), stop=None):
        if len(train) == 0:
            raise ValueError("the training split is empty.")
        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.train_split, self.val_split, self.test_split = train, val, test
        self.callbacks = list(callbacks)
        self.stop = stop                       # anything with is_set(): threading or multiprocessing Event
        self.val_batches = evaluation_batches(val) if len(val) else []
        self.test_batches = evaluation_batches(test) if len(test) else []
        self.steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = round(cfg.warmup_fraction * self.total_steps)
        self.optimizer = self._make_optimizer()
        self.history = {"steps": [], "evals": [], "epochs": []}

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # decay matrices (and the embedding table), not biases or norm gains
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr)

    def _emit(self, name: str, event: dict) -> None:
        notify(self.callbacks, name, event)

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _evaluate(self, step: int, epoch: float, elapsed: float) -> tuple[dict, torch.Tensor | None] | None:
        """Validation and test scores now; None when a stop request cut the evaluation short."""
        event = {"step": step, "epoch": round(epoch, 4), "elapsed": round(elapsed, 3)}
        probabilities = None
        if self.val_batches:
            val = evaluate(self.model, self.val_batches, len(self.val_split), self.device, self.stop)
            if val is None:
                return None
            event.update(val_loss=val.loss, val_accuracy=val.accuracy)
        if self.test_batches:
            test = evaluate(self.model, self.test_batches, len(self.test_split), self.device, self.stop)
            if test is None:
                return None
            event.update(test_loss=test.loss, test_accuracy=test.accuracy)
            probabilities = test.probabilities
        return event, probabilities

    @staticmethod
    def _better(event: dict, best: dict | None) -> bool:
        """Chosen on validation: higher accuracy, then lower loss. Without validation, the latest."""
        if best is None or "val_accuracy" not in event:
            return True
        return (event["val_accuracy"], -event["val_loss"]) > (best["val_accuracy"], -best["val_loss"])

    def _train_step(self, batch, lr: float) -> float:
        """One optimiser step on one batch; returns the loss (not finite: no step was taken)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ids = apply_word_dropout(batch.ids, self.cfg.word_dropout).to(self.device)   # (B, T)
        labels = batch.labels.to(self.device)                                        # (B,)
        loss = F.cross_entropy(self.model(ids), labels)
        if not torch.isfinite(loss):
            return loss.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss.item()

    def fit(self) -> TrainResult:
        cfg, model = self.cfg, self.model
        model.train()
        start = time.perf_counter()
        train_seconds, train_tokens, step = 0.0, 0, 0
        status, reason = "finished", None
        best, best_state, best_probabilities = None, None, None
        epochs_without_improvement = 0

        def record_eval(epoch_position: float) -> bool | None:
            """Evaluate and keep the model if validation says it is the best; None if stopped."""
            nonlocal best, best_state, best_probabilities
            evaluated = self._evaluate(step, epoch_position, time.perf_counter() - start)
            if evaluated is None:
                return None
            event, probabilities = evaluated
            event["best"] = self._better(event, best)
            if event["best"]:
                best, best_probabilities = event, probabilities
                best_state = copy.deepcopy(model.state_dict())
            self.history["evals"].append(event)
            self._emit("on_eval", event)
            return event["best"]

        for epoch in range(cfg.epochs):
            epoch_losses = []
            batches = training_batches(self.train_split, cfg.batch_size, seed=cfg.seed * 1000 + epoch)
            for index, batch in enumerate(batches):
                if self._stop_requested():
                    status, reason = "stopped", f"stopped by request at step {step}"
                    break
                tick = time.perf_counter()
                lr = cfg.lr * lr_multiplier(step, self.total_steps, self.warmup_steps, cfg.lr_schedule)
                loss_value = self._train_step(batch, lr)
                if not math.isfinite(loss_value):
                    status = "failed"
                    reason = (f"the loss became {loss_value} at step {step + 1} (learning rate "
                              f"{lr:.3g}); lower the learning rate"
                              + (" or turn gradient clipping on." if cfg.grad_clip == 0 else "."))
                    break
                step += 1
                epoch_losses.append(loss_value)
                train_seconds += time.perf_counter() - tick
                train_tokens += batch.n_tokens
                tokens_per_second = train_tokens / max(train_seconds, 1e-9)
                event = {"step": step, "total_steps": self.total_steps, "epoch": epoch + 1,
                         "epochs": cfg.epochs, "loss": loss_value, "lr": lr,
                         "tokens_per_second": round(tokens_per_second, 1),
                         "elapsed": round(time.perf_counter() - start, 3)}
                self.history["steps"].append(event)
                self._emit("on_step", event)
                mid_epoch = index + 1 < len(batches)
                if cfg.eval_every and step % cfg.eval_every == 0 and mid_epoch:
                    if record_eval(epoch + (index + 1) / len(batches)) is None:
                        status, reason = "stopped", f"stopped by request at step {step}, during an evaluation"
                        break
            if status != "finished":
                break
            improved = record_eval(epoch + 1)
            if improved is None:
                status, reason = "stopped", f"stopped by request at step {step}, during an evaluation"
                break
            epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
            summary = {"epoch": epoch + 1, "epochs": cfg.epochs, "step": step,
                       "train_loss": sum(epoch_losses) / max(1, len(epoch_losses)),
                       **{k: v for k, v in self.history["evals"][-1].items()
                          if k in ("val_loss", "val_accuracy", "test_loss", "test_accuracy")},
                       "tokens_per_second": round(train_tokens / max(train_seconds, 1e-9), 1),
                       "elapsed": round(time.perf_counter() - start, 3)}
            self.history["epochs"].append(summary)
            self._emit("on_epoch_end", summary)
            if cfg.patience and epochs_without_improvement >= cfg.patience and epoch + 1 < cfg.epochs:
                reason = (f"stopped early after epoch {epoch + 1}: the validation score "
                          f"(accuracy, then loss) did not improve for {cfg.patience} epoch(s)")
                break

        if best_state is not None and status != "failed":
            model.load_state_dict(best_state)     # model selection: keep the validation-best weights
        result = TrainResult(status, reason, best if status != "failed" else None, self.history,
                             step, train_seconds, train_tokens / max(train_seconds, 1e-9),
                             best_probabilities if status != "failed" else None)
        self._emit("on_end", {"status": status, "reason": reason, "steps": step,
                              "total_steps": self.total_steps,
                              "test_accuracy": result.test_accuracy,
                              "val_accuracy": best.get("val_accuracy") if best else None,
                              "best_step": best["step"] if best else None,
                              "tokens_per_second": round(result.tokens_per_second, 1),
                              "elapsed": round(time.perf_counter() - start, 3)})
        return result


# -- the whole run: data, tokenizer, model, loop, checkpoint --------------------------

@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: EncodedSplit
    val: EncodedSplit
    test: EncodedSplit


def prepare_data(model_cfg: ModelConfig, train_cfg: TrainConfig,
                 source: str | None = None) -> PreparedData:
    """Balanced subsets, a tokenizer trained (or cached) on the training reviews, encoded splits."""
    subsets = imdb_subsets(train_cfg.train_size, train_cfg.test_size, train_cfg.val_fraction,
                           train_cfg.seed, source)
    tokenizer = cached_tokenizer(train_cfg.tokenizer, subsets["train"].texts,
                                 train_cfg.vocab_size, train_cfg.lowercase)
    encoded = {name: encode_split(tokenizer, split.texts, split.labels, model_cfg.max_len,
                                  train_cfg.truncation)
               for name, split in subsets.items()}
    return PreparedData(tokenizer, encoded["train"], encoded["val"], encoded["test"])


def confusion_matrix(probabilities: torch.Tensor, labels: Sequence[int]) -> list[list[int]]:
    """counts[true][predicted]."""
    n = probabilities.size(1)
    counts = torch.zeros(n, n, dtype=torch.long)
    for true, predicted in zip(labels, probabilities.argmax(-1).tolist()):
        counts[true, predicted] += 1
    return counts.tolist()


def confidently_wrong(probabilities: torch.Tensor, split: EncodedSplit, k: int = 8,
                      max_chars: int = 1_500) -> list[dict]:
    """The k test reviews the model got wrong with the most confidence, most confident first."""
    labels = torch.tensor(split.labels)
    predicted = probabilities.argmax(-1)
    confidence = probabilities.max(-1).values
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:k]
    return [{"text": split.texts[i][:max_chars], "truncated": len(split.texts[i]) > max_chars,
             "label": int(labels[i]), "p_positive": round(float(probabilities[i, -1]), 4)}
            for i in order.tolist()]


@dataclass
class RunOutcome:
    result: TrainResult
    metrics: dict
    checkpoint: Path | None
    model: SentimentClassifier
    tokenizer: Tokenizer
    data: PreparedData = field(repr=False)


def default_run_name(label: str = "run") -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{label}"


def run_training(model_cfg: ModelConfig, train_cfg: TrainConfig, callbacks: Iterable = (),
                 stop=None, checkpoint_dir: str | os.PathLike | None = "checkpoints",
                 run_name: str | None = None, source: str | None = None,
                 data: PreparedData | None = None) -> RunOutcome:
    """Everything a run needs, in order; the model is saved unless the run failed or never stepped."""
    wall_start = time.perf_counter()
    callbacks = list(callbacks)
    torch.set_num_threads(train_cfg.threads or available_cores())
    device = resolve_device(train_cfg.device)
    notify(callbacks, "on_phase", {"phase": "preparing data"})
    data = data or prepare_data(model_cfg, train_cfg, source)
    # the tokenizer decides the vocabulary size the embedding table needs
    model_cfg = model_cfg.replace(vocab_size=data.tokenizer.vocab_size, pad_id=PAD_ID)
    torch.manual_seed(train_cfg.seed)
    model = SentimentClassifier(model_cfg)
    trainer = Trainer(model, train_cfg, data.train, data.val, data.test, device, callbacks, stop)
    snapshots = None
    if len(data.test):        # its step-0 picture is of the untrained model; it runs first each step
        snapshots = AttentionSnapshots(model, data.test.sequences[pick_review(data.test)],
                                       data.tokenizer, every=max(1, trainer.total_steps // 20))
        trainer.callbacks.insert(0, snapshots)
    notify(callbacks, "on_phase", {"phase": "training", "total_steps": trainer.total_steps})
    result = trainer.fit()
    wall_seconds = time.perf_counter() - wall_start

    metrics = {
        "status": result.status, "reason": result.reason,
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.best.get("val_accuracy") if result.best else None,
        "best_step": result.best["step"] if result.best else None,
        "best_epoch": result.best["epoch"] if result.best else None,
        "train_size": len(data.train) + len(data.val), "val_size": len(data.val),
        "test_size": len(data.test), "test_subset": "full test split" if train_cfg.test_size is None
        else f"balanced {len(data.test)}-review subset",
        "epochs": train_cfg.epochs, "steps": result.steps,
        "wall_seconds": round(wall_seconds, 2), "train_seconds": round(result.train_seconds, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "parameters": count_parameters(model), "device": str(device),
        "threads": torch.get_num_threads(), "created": datetime.now().isoformat(timespec="seconds"),
        "confusion": (confusion_matrix(result.test_probabilities, data.test.labels)
                      if result.test_probabilities is not None else None),
        "confidently_wrong": (confidently_wrong(result.test_probabilities, data.test)
                              if result.test_probabilities is not None else []),
        "history": result.history,
        "attention_snapshots": snapshots.to_dict() if snapshots else None,
    }
    checkpoint = None
    # a failed model is not worth keeping, and one stopped before its first step learned nothing
    if checkpoint_dir is not None and result.status != "failed" and result.steps > 0:
        notify(callbacks, "on_phase", {"phase": "saving"})
        checkpoint = save_run(checkpoint_dir, run_name or default_run_name(), model, train_cfg,
                              data.tokenizer, metrics)
    return RunOutcome(result, metrics, checkpoint, model, data.tokenizer, data)
