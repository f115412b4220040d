"""How long will a run take? Time a few real training steps of the model here, then multiply.

The estimate has three parts: preparing the data (reading, tokenizer, encoding,
roughly linear in the number of reviews), the training steps (measured: a
few optimiser steps of this very model on a batch of typical length, dropout
on), and the evaluations (a forward pass costs about a sixth of such a step).
On this project's 2-core CPU the Training page said 1:05, 3:59 and 10:51 for
the quick, full and seed presets, which took 1:16, 4:05 and 11:59.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ModelConfig, TrainConfig
from .encoder import SentimentClassifier

IMDB_SPLIT_SIZE = 25_000
# an evaluation forward pass (no dropout, no backward, no AdamW) against a training step:
# on the full preset 27,500 reviews took about 25 s to evaluate, a sixth of their training time
FORWARD_SHARE = 1 / 6
# starting Python and torch, reading IMDB, training the tokenizer and encoding, fitted on this
# project's 2-core CPU: quick (10k reviews) 2-3 s, full (50k) 9-12 s, plus about 2 s to start
PREPARE_BASE_SECONDS, PREPARE_SECONDS_PER_REVIEW = 2.5, 0.2e-3


def time_training_step(model_cfg: ModelConfig, batch_size: int, tokens: int,
                       probe_batch: int = 4, cheap_seconds: float = 0.25) -> float:
    """Seconds per optimiser step of this model on a (batch_size, tokens) batch, measured here.

    Steps on a small probe batch come first. If they were cheap, the full batch is
    timed as well (small models are dominated by fixed costs, so scaling would
    mislead); if not, the probe's time is scaled by batch_size / probe_batch, which
    is accurate for big models and keeps a slow model from freezing the page.
    """
    tokens = max(2, min(tokens, model_cfg.max_len))
    cfg = model_cfg                          # dropout included: it costs time too
    model = SentimentClassifier(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, cfg.vocab_size, (batch_size, tokens), generator=generator)  # (B, T)
    labels = torch.randint(0, cfg.n_classes, (batch_size,), generator=generator)      # (B,)

    def timed_step(rows: int) -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(ids[:rows]), labels[:rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    probe = min(batch_size, probe_batch)
    timed_step(probe)                        # the first step allocates; it is not timed
    # the fastest of two: a step that a warming thread pool or another process slowed is not typical
    probe_seconds = min(timed_step(probe), timed_step(probe))
    if probe == batch_size:
        return probe_seconds
    if probe_seconds < cheap_seconds:
        timed_step(batch_size)
        return min(timed_step(batch_size), timed_step(batch_size))
    return probe_seconds * batch_size / probe


@dataclass
class RunEstimate:
    steps: int
    evaluations: int
    prepare_seconds: float
    train_seconds: float
    eval_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.prepare_seconds + self.train_seconds + self.eval_seconds


def estimate_run(train_cfg: TrainConfig, tokens_per_review: float, step_seconds: float) -> RunEstimate:
    """The time of a run from one measured step time and the typical review length (in tokens)."""
    if step_seconds <= 0 or tokens_per_review <= 0:
        raise ValueError("step time and review length must be positive to estimate a run.")
    n_train_all = train_cfg.train_size or IMDB_SPLIT_SIZE
    n_val = round(n_train_all * train_cfg.val_fraction)
    n_test = train_cfg.test_size or IMDB_SPLIT_SIZE
    steps = math.ceil((n_train_all - n_val) / train_cfg.batch_size) * train_cfg.epochs
    evaluations = train_cfg.epochs + (steps // train_cfg.eval_every if train_cfg.eval_every else 0)
    per_review = step_seconds / train_cfg.batch_size
    return RunEstimate(
        steps=steps,
        evaluations=evaluations,
        prepare_seconds=PREPARE_BASE_SECONDS + PREPARE_SECONDS_PER_REVIEW * (n_train_all + n_test),
        train_seconds=steps * step_seconds,
        eval_seconds=evaluations * (n_val + n_test) * per_review * FORWARD_SHARE,
    )
