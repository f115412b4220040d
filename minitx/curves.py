"""Training curves ready to draw: smoothed, and thinned to what a browser can draw quickly.

Per-step losses are noisy (each is one batch of 32 reviews), so the pages draw
them faint and draw an exponential moving average on top, debiased the way
TensorBoard does it so the first points are not dragged towards zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_POINTS = 2_000      # a browser redraws 2,000 points in a few ms; 100,000 take seconds


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Debiased exponential moving average: weight 0 returns the values, 0.99 is very smooth."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), not {weight}.")
    out, average, norm = [], 0.0, 0.0
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(out[-1] if out else float("nan"))   # a NaN must not poison the whole curve
            continue
        average = weight * average + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(average / norm)
    return out


def thin(rows: Sequence[dict], max_points: int = MAX_POINTS) -> list[dict]:
    """At most max_points rows, evenly spaced, always keeping the last one."""
    if max_points < 2:
        raise ValueError("keep at least 2 points.")
    if len(rows) <= max_points:
        return list(rows)
    stride = math.ceil(len(rows) / max_points)
    kept = list(rows[::stride])
    if kept[-1] is not rows[-1]:
        kept[-1] = rows[-1]
    return kept


def loss_curve(step_events: Sequence[dict], weight: float = 0.9,
               max_points: int = MAX_POINTS) -> list[dict]:
    """Rows of step, loss (raw), smoothed loss and learning rate, thinned for drawing."""
    smoothed = smooth([e["loss"] for e in step_events], weight)
    rows = [{"step": e["step"], "loss": e["loss"], "smoothed": s, "lr": e["lr"]}
            for e, s in zip(step_events, smoothed)]
    return thin(rows, max_points)


EVAL_METRICS = ("loss", "accuracy", "bits_per_char", "perplexity")


def eval_curve(eval_events: Sequence[dict]) -> list[dict]:
    """Long rows (step, split, metric, value) for validation and test loss and accuracy (a
    classifier), or loss, bits per character and perplexity (a language model)."""
    rows = []
    for event in eval_events:
        for split in ("val", "test"):
            for metric in EVAL_METRICS:
                value = event.get(f"{split}_{metric}")
                if value is not None:
                    rows.append({"step": event["step"], "split": split, "metric": metric, "value": value})
    return rows


def samples(eval_events: Sequence[dict]) -> list[dict]:
    """What a language model wrote at each evaluation: rows of step, sample and its validation
    bits per character, in order."""
    return [{"step": e["step"], "sample": e["sample"], "bits_per_char": e.get("val_bits_per_char")}
            for e in eval_events if e.get("sample") is not None]


def epoch_curves(history: dict, weight: float = 0.95,
                 max_points: int = MAX_POINTS) -> tuple[list[dict], list[dict]]:
    """A run's smoothed training loss and its evaluations against epochs (fractional), so runs
    with different data sizes or batch sizes line up when overlaid."""
    steps = history.get("steps") or []
    loss = []
    if steps:
        steps_per_epoch = steps[-1]["total_steps"] / steps[-1]["epochs"]
        smoothed = smooth([e["loss"] for e in steps], weight)
        loss = thin([{"epoch": e["step"] / steps_per_epoch, "smoothed": s}
                     for e, s in zip(steps, smoothed)], max_points)
    evals = [{"epoch": e["epoch"], **{k: e[k] for k in ("val_accuracy", "test_accuracy", "val_loss",
                                                        "val_bits_per_char", "test_bits_per_char")
                                      if e.get(k) is not None}}
             for e in history.get("evals") or []]
    return loss, evals
