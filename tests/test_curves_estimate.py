import math

import pytest

from minitx.config import TrainConfig
from minitx.curves import epoch_curves, eval_curve, loss_curve, smooth, thin
from minitx.estimate import estimate_run, time_training_step
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
    est = estimate_run(cfg, tokens_per_review=200, step_seconds=0.1)
    assert est.steps == 2 * 30                         # ceil(900 / 30) per epoch
    assert est.train_seconds == pytest.approx(6.0)
    assert est.evaluations == 2
    assert est.eval_seconds == pytest.approx(2 * 500 * (0.1 / 30) / 6)
    assert est.total_seconds == pytest.approx(est.prepare_seconds + 6.0 + est.eval_seconds)
    with pytest.raises(ValueError):
        estimate_run(cfg, 200, 0.0)


def test_timing_a_step_gives_a_positive_time_that_grows_with_the_batch():
    cfg = tiny_config(d_model=64, max_len=128)
    small, big = time_training_step(cfg, 2, 64), time_training_step(cfg, 256, 128)
    assert 0 < small < big
