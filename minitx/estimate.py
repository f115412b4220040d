"""How long will a run take? Time a few real training steps of the model here, then multiply.

The estimate has three parts: what a run does before its first step (starting
its process, reading the data, the tokenizer, encoding: roughly linear in the
number of reviews), the training steps (measured: optimiser steps of this very
model, dropout on, at each of four typical review lengths, the median of three
each, averaged: a step's cost grows faster than its length, so one step at the
mean length would come out too cheap), and the evaluations (a forward pass
costs about a quarter of a step, per review).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ModelConfig, TrainConfig
from .model import build_model
from .train import IMDB_SPLIT_SIZE, LM_POOL_SIZE
from .train.loop import make_optimizer

# an evaluation (a forward pass, no dropout, no backward, no AdamW, and the task's scores) against a
# training step, per review or block, measured in runs of quick and lm-quick (benchmarks/estimate.py)
FORWARD_SHARE = 0.25
# what a run does before its first step: starting its process and importing torch, reading IMDB, training
# the tokenizer, encoding; fitted to the same runs
PREPARE_BASE_SECONDS, PREPARE_SECONDS_PER_REVIEW = 5.3, 0.2e-3


def representative_lengths(lengths: Sequence[int], max_len: int, groups: int = 4) -> list[int]:
    """The middle kept length of each of `groups` equal-count groups of reviews, shortest first.

    A step's cost grows faster than its length (attention is quadratic in it), so a step at
    the mean length is cheaper than the mean step; one step at each of these lengths, averaged,
    gives the mean of the mix.
    """
    if groups < 1:
        raise ValueError(f"groups must be at least 1, not {groups}.")
    kept = sorted(min(int(n), max_len) for n in lengths if n > 0)
    if not kept:
        raise ValueError("no review lengths to choose from.")
    return [kept[min(len(kept) - 1, (2 * g + 1) * len(kept) // (2 * groups))] for g in range(groups)]


GROUP_NAMES = {2: "half", 3: "third", 4: "quarter"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def describe_lengths(lengths: Sequence[int], max_len: int) -> str:
    """representative_lengths in words, for the estimate: "at 116 tokens per review, the middle of
    the shortest quarter of the reviews by length, and at max_len (128) for the other three"."""
    if not lengths:
        raise ValueError("no lengths to describe.")
    groups = len(lengths)
    if groups == 1:
        return (f"at max_len ({max_len} tokens per review), which the middle review reaches"
                if lengths[0] >= max_len else f"at {lengths[0]} tokens per review, the middle length")
    part = GROUP_NAMES.get(groups, f"1/{groups}")
    kept = [n for n in lengths if n < max_len]
    if not kept:
        return (f"at max_len ({max_len} tokens per review), which the middle review of every {part} "
                f"of the reviews by length reaches")
    listed = f"{', '.join(map(str, kept[:-1]))} and {kept[-1]}" if len(kept) > 1 else str(kept[0])
    if len(kept) == groups:
        return f"at {listed} tokens per review, the middle of each {part} of the reviews by length"

    def count(n: int) -> str:
        return NUMBER_WORDS.get(n, str(n))

    shortest = f"the shortest {part}" if len(kept) == 1 else f"the {count(len(kept))} shortest {part}s"
    return (f"at {listed} tokens per review, the middle of {shortest} of the reviews by length, "
            f"and at max_len ({max_len}) for the other {count(groups - len(kept))}")


def time_training_step(model_cfg: ModelConfig, batch_size: int, lengths: Sequence[int],
                       probe_batch: int = 4, cheap_seconds: float = 0.25, repeats: int = 3) -> float:
    """Mean seconds per optimiser step of this model over batches of these lengths, measured here.

    Steps on a small probe batch at the longest length come first. If they were cheap, each
    length is timed on the full batch (small models are dominated by fixed costs, so scaling
    would mislead); if not, on the probe batch, scaled by batch_size / probe_batch, which is
    accurate for big models and keeps a slow model from freezing the page.
    """
    lengths = [max(2, min(int(n), model_cfg.max_len)) for n in lengths]
    if not lengths:
        raise ValueError("time at least one length.")
    longest = max(lengths)
    cfg = model_cfg                          # dropout included: it costs time too
    model = build_model(cfg)
    optimizer = make_optimizer(model, 1e-4, 0.01, torch.device("cpu"))   # the trainer's
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, cfg.vocab_size, (batch_size, longest), generator=generator)  # (B, T)
    labels = torch.randint(0, cfg.n_classes, (batch_size,), generator=generator)       # (B,)

    def loss_of(rows: int, tokens: int) -> torch.Tensor:
        if cfg.is_lm:                        # every position predicts the next token
            logits = model(ids[:rows, :tokens]).logits                                    # (B, T, V)
            return F.cross_entropy(logits.flatten(0, 1), ids[:rows, :tokens].roll(-1, 1).flatten())
        return F.cross_entropy(model(ids[:rows, :tokens]), labels[:rows])

    def timed_step(rows: int, tokens: int) -> float:
        start = time.perf_counter()
        loss = loss_of(rows, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    probe = min(batch_size, probe_batch)
    timed_step(probe, longest)               # the first step allocates; it is not timed
    # the fastest of two: a step that a warming thread pool or another process slowed is not typical
    probe_seconds = min(timed_step(probe, longest), timed_step(probe, longest))
    rows, scale = probe, batch_size / probe
    if probe == batch_size or probe_seconds < cheap_seconds:
        rows, scale = batch_size, 1.0
        if probe < batch_size:
            timed_step(batch_size, longest)  # the full batch allocates more; not timed either
    counts = Counter(lengths)            # lengths cut to max_len repeat: time each one once a round
    rounds = [{n: timed_step(rows, n) for n in counts} for _ in range(repeats)]
    seconds = {n: statistics.median(r[n] for r in rounds) for n in counts}   # one slow or lucky step moves no median
    return scale * sum(count * seconds[n] for n, count in counts.items()) / len(lengths)


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


def estimate_for(model_cfg: ModelConfig, train_cfg: TrainConfig, review_lengths: Sequence[int],
                 step_time=time_training_step) -> tuple[RunEstimate, float, str]:
    """The estimate the Training page shows, from the lengths of some reviews under this run's kind of
    tokenizer: (the estimate, the mean step time measured here, the lengths it was timed at, in words).
    A language model's steps are all blocks of max_len tokens; a classifier's, reviews of typical lengths."""
    if model_cfg.is_lm:
        lengths, per_review = [model_cfg.max_len], sum(review_lengths) / max(1, len(review_lengths))
        what = f"on blocks of {model_cfg.max_len} tokens"
    else:
        lengths, per_review = representative_lengths(review_lengths, model_cfg.max_len), None
        what = describe_lengths(lengths, model_cfg.max_len)
    seconds = step_time(model_cfg, train_cfg.batch_size, tuple(lengths))
    return estimate_run(train_cfg, seconds, model_cfg, per_review), seconds, what


def estimate_run(train_cfg: TrainConfig, step_seconds: float, model_cfg: ModelConfig | None = None,
                 tokens_per_review: float | None = None) -> RunEstimate:
    """The time of a run from the mean step time measured by time_training_step. A language
    model's steps are blocks of max_len tokens, so it needs the mean tokens per review too."""
    if step_seconds <= 0:
        raise ValueError(f"the step time must be positive to estimate a run, not {step_seconds}.")
    if model_cfg is not None and model_cfg.is_lm:
        return _estimate_lm_run(train_cfg, step_seconds, model_cfg.max_len, tokens_per_review or 300.0)
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


def _estimate_lm_run(train_cfg: TrainConfig, step_seconds: float, block: int, tokens_per_review: float) -> RunEstimate:
    """Blocks of `block` tokens cut from the packed reviews (each review plus its end token)."""
    n_train_all = train_cfg.train_size or LM_POOL_SIZE
    n_val = round(n_train_all * train_cfg.val_fraction)
    n_test = train_cfg.test_size or IMDB_SPLIT_SIZE
    per_block = step_seconds / train_cfg.batch_size

    def blocks(reviews: int) -> int:
        return math.ceil(reviews * (tokens_per_review + 1) / block)

    steps = math.ceil(blocks(n_train_all - n_val) / train_cfg.batch_size) * train_cfg.epochs
    evaluations = 1 + train_cfg.epochs + (steps // train_cfg.eval_every if train_cfg.eval_every else 0)
    return RunEstimate(
        steps=steps,
        evaluations=evaluations,
        prepare_seconds=PREPARE_BASE_SECONDS + PREPARE_SECONDS_PER_REVIEW * (n_train_all + n_test),
        train_seconds=steps * step_seconds,
        eval_seconds=evaluations * blocks(n_val + n_test) * per_block * FORWARD_SHARE,
    )
