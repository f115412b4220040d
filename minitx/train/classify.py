"""The classification task: IMDB reviews in, positive or negative out.

The trainer's loop asks this task for batches (length-bucketed, padded
reviews), for the loss (cross-entropy of the pooled logits against the label,
after word dropout) and for an evaluation (loss and accuracy on the validation
and test splits). The model is chosen on validation accuracy, then loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig, TrainConfig
from ..data import EncodedSplit, encode_split, evaluation_batches, imdb_subsets, training_batches
from ..snapshots import AttentionSnapshots, pick_review
from ..tokenizer import CLS_ID, PAD_ID, UNK_ID, Tokenizer, cached_tokenizer
from .distributed import Distributed


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
def evaluate(model: torch.nn.Module, batches: Sequence, n_rows: int,
             device: torch.device, stop=None, distributed: Distributed | None = None) -> Evaluation | None:
    """Mean cross-entropy and accuracy over a whole split; the model is put in eval mode.

    With a stop flag that gets set part-way, it gives up and returns None. Under torchrun each
    rank scores its share of the batches and the sums are added up (every row is one rank's).
    """
    was_training = model.training
    model.eval()
    probabilities = torch.zeros(n_rows, model.cfg.n_classes)
    labels = torch.zeros(n_rows, dtype=torch.long)
    total_loss = 0.0
    for batch in distributed.shard(batches) if distributed else batches:
        if distributed is None and stop is not None and stop.is_set():
            model.train(was_training)
            return None
        logits = model(batch.ids.to(device)).float().cpu()                  # (B, C)
        total_loss += F.cross_entropy(logits, batch.labels, reduction="sum").item()
        probabilities[batch.rows] = logits.softmax(-1)
        labels[batch.rows] = batch.labels
    model.train(was_training)
    if distributed is not None:            # rows no rank scored stay 0 in every other rank's copy
        probabilities, labels = distributed.sum(probabilities), distributed.sum(labels)
        total_loss = float(distributed.sum(torch.tensor([total_loss], dtype=torch.float64))[0])
    accuracy = (probabilities.argmax(-1) == labels).float().mean().item()
    return Evaluation(total_loss / max(1, n_rows), accuracy, probabilities)


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


class ClassificationTask:
    """Sentiment on encoded IMDB splits: what the trainer needs, and what a run reports."""

    def __init__(self, train: EncodedSplit, val: EncodedSplit, test: EncodedSplit, cfg: TrainConfig,
                 tokenizer: Tokenizer | None = None):
        self.train, self.val, self.test, self.cfg, self.tokenizer = train, val, test, cfg, tokenizer
        self.val_batches = evaluation_batches(val) if len(val) else []
        self.test_batches = evaluation_batches(test) if len(test) else []
        self.snapshots: AttentionSnapshots | None = None
        self.distributed: Distributed | None = None       # set under torchrun: evaluation is sharded

    @classmethod
    def prepare(cls, model_cfg: ModelConfig, train_cfg: TrainConfig, source: str | None = None,
                tokenizer: Tokenizer | None = None) -> "ClassificationTask":
        """Balanced subsets, a tokenizer trained (or cached) on the training reviews (or the one
        given: a continued run's own), encoded splits."""
        subsets = imdb_subsets(train_cfg.train_size, train_cfg.test_size, train_cfg.val_fraction,
                               train_cfg.seed, source)
        tokenizer = tokenizer or cached_tokenizer(train_cfg.tokenizer, subsets["train"].texts,
                                                  train_cfg.vocab_size, train_cfg.lowercase)
        encoded = {name: encode_split(tokenizer, split.texts, split.labels, model_cfg.max_len,
                                      train_cfg.truncation)
                   for name, split in subsets.items()}
        return cls(encoded["train"], encoded["val"], encoded["test"], train_cfg, tokenizer)

    # -- what the trainer asks ----------------------------------------------------------

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.train) / batch_size)

    def batches(self, epoch: int, batch_size: int) -> list:
        return training_batches(self.train, batch_size, seed=self.cfg.seed * 1000 + epoch)

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        copy = dict(device=device, non_blocking=device.type == "cuda")
        ids = apply_word_dropout(batch.ids, self.cfg.word_dropout).to(**copy)   # (B, T)
        return F.cross_entropy(model(ids), batch.labels.to(**copy)), batch.n_tokens

    def evaluate(self, model, device, stop=None) -> tuple[dict, torch.Tensor | None] | None:
        metrics, probabilities = {}, None
        for name, split, batches in (("val", self.val, self.val_batches), ("test", self.test, self.test_batches)):
            if batches:
                result = evaluate(model, batches, len(split), device, stop, self.distributed)
                if result is None:
                    return None
                metrics.update({f"{name}_loss": result.loss, f"{name}_accuracy": result.accuracy})
                probabilities = result.probabilities       # the test split's, kept with the best
        return metrics, probabilities

    @staticmethod
    def better(event: dict, best: dict | None) -> bool:
        """Higher validation accuracy, then lower loss. Without validation, the latest."""
        if best is None or "val_accuracy" not in event:
            return True
        return (event["val_accuracy"], -event["val_loss"]) > (best["val_accuracy"], -best["val_loss"])

    # -- what a run records and reports -------------------------------------------------

    def recorders(self, model, total_steps: int) -> list:
        """Attention maps of one fixed test review as the model learns (step 0: untrained)."""
        if not len(self.test) or self.tokenizer is None:
            return []
        self.snapshots = AttentionSnapshots(model, self.test.sequences[pick_review(self.test)],
                                            self.tokenizer, every=max(1, total_steps // 20))
        return [self.snapshots]

    def sizes(self) -> dict:
        return {"train_size": len(self.train) + len(self.val), "val_size": len(self.val),
                "test_size": len(self.test),
                "test_subset": "full test split" if self.cfg.test_size is None
                else f"balanced {len(self.test)}-review subset"}

    def report(self, model, probabilities: torch.Tensor | None) -> dict:
        """What a finished run adds to its metrics: the confusion matrix, the worst mistakes."""
        return {"confusion": confusion_matrix(probabilities, self.test.labels) if probabilities is not None else None,
                "confidently_wrong": confidently_wrong(probabilities, self.test) if probabilities is not None else [],
                "attention_snapshots": self.snapshots.to_dict() if self.snapshots else None}
