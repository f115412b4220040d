"""Shared test fixtures. Tests run on the CPU, small and seeded.

Tests that need IMDB or Chromium skip themselves when those are absent on a
user's machine, but under CI (CI=true) a missing dependency is a failure.
"""

from __future__ import annotations

import os

import pytest
import torch

from minitx.config import ModelConfig

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a user's machine; fail under CI, where everything must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _small_and_seeded(monkeypatch, tmp_path_factory):
    torch.manual_seed(0)
    # keep trained tokenizers out of the user's cache
    monkeypatch.setenv("MINITX_CACHE", str(tmp_path_factory.getbasetemp() / "minitx-cache"))
    # one run at a time on the machine: each test has its own lock, apart from the user's app
    monkeypatch.setenv("MINITX_TRAINING_LOCK", str(tmp_path_factory.mktemp("lock") / "training.lock"))
    # the learner's lab files: each test its own, never the user's my_labs/
    monkeypatch.setenv("MINITX_LABS", str(tmp_path_factory.mktemp("labs")))


@pytest.fixture(scope="session")
def imdb():
    """The IMDB DatasetDict, from MINITX_IMDB or the Hub."""
    from minitx.data import DataUnavailableError, load_imdb

    try:
        return load_imdb()
    except DataUnavailableError as error:
        skip_or_fail(f"IMDB is not available: {error}")


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, imdb):
    """Two real runs, trained once for the whole session as the command line trains them: the
    "lm-tiny" language model, then the "tiny" sentiment classifier (so the newer run is the
    classifier). Tests read them; none may change this folder (copy it first)."""
    from minitx.presets import PRESETS
    from minitx.train import run_training

    folder = tmp_path_factory.mktemp("trained-runs")
    for name in ("lm-tiny", "tiny"):
        outcome = run_training(*PRESETS[name], checkpoint_dir=folder, run_name=name)
        assert outcome.result.status == "finished", outcome.metrics["reason"]
    return folder


def tiny_config(**changes) -> ModelConfig:
    base = dict(vocab_size=50, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=64,
                max_len=64, dropout=0.0)
    base.update(changes)
    return ModelConfig(**base)


def random_ids(batch: int, length: int, vocab: int = 50, generator=None) -> torch.Tensor:
    """Ids that avoid the special tokens 0 ([PAD]), 1 and 2."""
    return torch.randint(3, vocab, (batch, length), generator=generator)
