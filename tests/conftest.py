"""Shared test fixtures. Tests run on the CPU, small and seeded.

Tests that need IMDB or Chromium skip themselves when those are absent on a
user's machine, but under CI (CI=true) a missing dependency is a failure.
"""

from __future__ import annotations

import os

import pytest
import torch

from minitx.config import ModelConfig
from minitx.train import available_cores

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pytest.ini): one test worker per core, at most 4 (each holds IMDB in memory)."""
    return max(1, min(4, available_cores()))


def _keep_to_my_share_of_the_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts: servers, training workers,
    torchrun's ranks) keeps to its own cores: a training worker, niced below its server as the
    app runs it, would otherwise get a sliver of a core shared with the other test worker while
    its torch threads wait for each other."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or available_cores() < count or not hasattr(os, "sched_setaffinity"):
        return
    share = sorted(os.sched_getaffinity(0))[int(worker.removeprefix("gw")) % count::count]
    for thread in os.listdir("/proc/self/task"):    # every thread: xdist's own started before this
        os.sched_setaffinity(int(thread), share)
    torch.set_num_threads(len(share))


_keep_to_my_share_of_the_cores()


# the files that take ten seconds or more, longest first: the last files handed out are then short
# ones, and neither worker waits long for the other at the end
SLOW_FILES = ("test_browser.py", "test_app.py", "test_pretrained_pages.py", "test_runs.py", "test_build_page.py",
              "test_distributed.py", "test_pretrained.py", "test_hostile_training.py", "test_hostile_verdicts.py",
              "test_labs.py", "test_resume.py", "test_hostile_lingering.py", "test_cli.py", "test_inside.py",
              "test_hostile_rebinding.py", "test_hostile_resources.py")


def pytest_collection_modifyitems(items) -> None:
    """The slow files first, so that under pytest-xdist the longest runs beside the others
    instead of alone after them (pytest.ini keeps xdist to this order)."""
    rank = {name: n for n, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


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
