import math

import pytest
import torch

import minitx.estimate as estimate
from minitx.config import TrainConfig
from minitx.curves import epoch_curves, eval_curve, loss_curve, smooth, thin
from minitx.estimate import describe_lengths, estimate_run, representative_lengths, time_training_step
from tests.conftest import tiny_config


def test_smooth_is_a_debiased_moving_average():
    assert smooth([1.0, 2.0, 3.0], weight=0.0) == [1.0, 2.0, 3.0]
    assert smooth([5.0] * 10, weight=0.9) == pytest.approx([5.0] * 10)   # no pull towards zero
    s = smooth([0.0, 1.0], weight=0.5)
    assert s[1] == pytest.approx((0.5 * 0.5 * 0 + 0.5 * 1.0) / (1 - 0.25))
    assert math.isfinite(smooth([1.0, float("nan"), 1.0])[-1])
    with pytest.raises(ValueError):
        smooth([1.0], weight=1.0)


def test_thin_keeps_at_most_max_points_and_the_last():
    rows = [{"step": i} for i in range(10_001)]
    kept = thin(rows, 2_000)
    assert len(kept) <= 2_000 and kept[0]["step"] == 0 and kept[-1]["step"] == 10_000
    assert thin(rows[:5], 2_000) == rows[:5]


def test_curves_from_events():
    steps = [{"step": i, "loss": 1.0 / i, "lr": 0.1, "total_steps": 20, "epochs": 2} for i in range(1, 21)]
    rows = loss_curve(steps, weight=0.0)
    assert [r["smoothed"] for r in rows] == [r["loss"] for r in rows]
    evals = [{"step": 10, "epoch": 1.0, "val_loss": 0.5, "val_accuracy": 0.8, "test_loss": 0.6,
              "test_accuracy": 0.7}]
    assert len(eval_curve(evals)) == 4
    loss, ev = epoch_curves({"steps": steps, "evals": evals})
    assert loss[9]["epoch"] == pytest.approx(1.0) and loss[-1]["epoch"] == pytest.approx(2.0)
    assert ev == [{"epoch": 1.0, "val_accuracy": 0.8, "test_accuracy": 0.7, "val_loss": 0.5}]


def test_the_estimate_adds_up_its_parts():
    cfg = TrainConfig(train_size=1000, test_size=400, val_fraction=0.1, epochs=2, batch_size=30)
    est = estimate_run(cfg, step_seconds=0.1)
    assert est.steps == 2 * 30                         # ceil(900 / 30) per epoch
    assert est.train_seconds == pytest.approx(6.0)
    assert est.evaluations == 2
    assert est.eval_seconds == pytest.approx(2 * 500 * (0.1 / 30) * estimate.FORWARD_SHARE)
    assert est.total_seconds == pytest.approx(est.prepare_seconds + 6.0 + est.eval_seconds)
    with pytest.raises(ValueError):
        estimate_run(cfg, 0.0)


def test_timing_a_step_gives_a_positive_time_that_grows_with_the_batch():
    cfg = tiny_config(d_model=64, max_len=128)
    small, big = time_training_step(cfg, 2, [64]), time_training_step(cfg, 256, [128])
    assert 0 < small < big


def test_representative_lengths_are_the_middles_of_equal_groups_capped_at_max_len():
    lengths = list(range(1, 101))                    # 1..100, four groups of 25
    assert representative_lengths(lengths, max_len=1000) == [13, 38, 63, 88]
    assert representative_lengths(lengths, max_len=50) == [13, 38, 50, 50]   # what the model keeps
    assert representative_lengths(reversed(lengths), max_len=1000, groups=1) == [51]
    assert representative_lengths([7], max_len=10) == [7, 7, 7, 7]
    with pytest.raises(ValueError):
        representative_lengths([], max_len=10)
    with pytest.raises(ValueError):
        representative_lengths(lengths, max_len=10, groups=0)


def test_the_lengths_timed_are_told_with_max_len_said_once():
    assert describe_lengths([50, 80, 120, 200], max_len=400) == \
        "at 50, 80, 120 and 200 tokens per review, the middle of each quarter of the reviews by length"
    assert describe_lengths([116, 128, 128, 128], max_len=128) == (
        "at 116 tokens per review, the middle of the shortest quarter of the reviews by length, "
        "and at max_len (128) for the other three")
    assert describe_lengths([60, 90, 128, 128], max_len=128) == (
        "at 60 and 90 tokens per review, the middle of the two shortest quarters of the reviews by "
        "length, and at max_len (128) for the other two")
    assert describe_lengths([64] * 4, max_len=64) == (
        "at max_len (64 tokens per review), which the middle review of every quarter of the reviews "
        "by length reaches")
    assert describe_lengths([51], max_len=100) == "at 51 tokens per review, the middle length"
    assert describe_lengths([100], max_len=100) == \
        "at max_len (100 tokens per review), which the middle review reaches"
    with pytest.raises(ValueError):
        describe_lengths([], max_len=64)


class CountingClock:
    """A clock that a fake model moves on by rows x tokens of every batch it sees."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_timed_step_is_the_mean_over_the_lengths_on_both_paths(monkeypatch):
    clock = CountingClock()

    class CostsRowsTimesTokens(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(cfg.n_classes))

        def forward(self, ids):                     # (B, T) -> (B, C)
            clock.now += ids.numel() * 1e-6          # the step "takes" a microsecond per token
            batches.append(tuple(ids.shape))
            return self.w.expand(ids.size(0), -1)

    monkeypatch.setattr(estimate.time, "perf_counter", clock)
    monkeypatch.setattr(estimate, "build_model", CostsRowsTimesTokens)
    cfg = tiny_config(max_len=64)
    mean_cost = 16 * (10 + 20 + 64 + 64) / 4 * 1e-6     # 100 and 200 are cut to max_len 64
    batches = []
    full = time_training_step(cfg, 16, [10, 20, 100, 200])                      # cheap: the full batch
    # 64 tokens on the full batch: once to allocate, untimed, then once a round (three) for both cut lengths
    assert batches.count((16, 64)) == 4 and batches.count((16, 10)) == 3
    scaled = time_training_step(cfg, 16, [10, 20, 100, 200], cheap_seconds=0.0)  # a 4-row probe, x 4
    assert full == pytest.approx(mean_cost) and scaled == pytest.approx(mean_cost)
    with pytest.raises(ValueError):
        time_training_step(cfg, 16, [])
