import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from minitx import checkpoint
from minitx.checkpoint import check_run_name, load_run, save_run
from minitx.config import TrainConfig
from minitx.encoder import SentimentClassifier
from minitx.tokenizer import Tokenizer
from tests.conftest import random_ids, tiny_config

TEXTS = ["a good film, truly good", "a bad film, truly bad", "plot acting ending music"] * 20


@pytest.fixture
def saved_run(tmp_path):
    tok = Tokenizer.train("word", TEXTS, vocab_size=40)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size, pos_encoding="rope")).eval()
    path = save_run(tmp_path, "run-1", model, TrainConfig(), tok, {"status": "finished", "test_accuracy": 0.5})
    return path, model, tok


def test_round_trip_gives_identical_logits(saved_run):
    path, model, tok = saved_run
    assert sorted(p.name for p in path.iterdir()) == sorted(checkpoint.RUN_FILES)
    loaded = load_run(path)
    ids = random_ids(3, 9, vocab=tok.vocab_size)
    assert torch.equal(loaded.model(ids), model(ids))
    assert loaded.model_config == model.cfg
    assert loaded.metrics["test_accuracy"] == 0.5
    assert loaded.tokenizer.encode("good film").ids == tok.encode("good film").ids


def test_truncated_weights_raise_value_error_naming_the_file(saved_run):
    path, _, _ = saved_run
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_run(path)


def test_wrong_shape_tensor_raises_value_error(saved_run):
    path, _, _ = saved_run
    state = load_file(str(path / "model.safetensors"))
    state["classifier.weight"] = torch.zeros(3, 32)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"classifier.weight has shape \(3, 32\)"):
        load_run(path)


def test_missing_config_raises_value_error(saved_run):
    path, _, _ = saved_run
    os.remove(path / "config.json")
    with pytest.raises(ValueError, match="config.json is missing"):
        load_run(path)


@pytest.mark.parametrize("damage", [
    lambda p: (p / "config.json").write_text("{ truncated"),
    lambda p: (p / "config.json").write_text(json.dumps({"model": {"d_model": 7, "n_heads": 2}, "train": {}})),
    lambda p: (p / "tokenizer.json").write_text("[]"),
    lambda p: os.remove(p / "tokenizer.json"),
    lambda p: os.remove(p / "metrics.json"),
    lambda p: (p / "model.safetensors").write_bytes(b"\x00" * 64),
])
def test_any_damaged_file_raises_value_error(saved_run, damage):
    path, _, _ = saved_run
    damage(path)
    with pytest.raises(ValueError):
        load_run(path)


def test_weights_are_never_unpickled(saved_run):
    """A pickle disguised as safetensors is refused, not executed."""
    path, _, _ = saved_run
    torch.save({"x": torch.zeros(1)}, path / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_run(path)


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "..", ".hidden", "", "x" * 101,
                                  "name with spaces", "semi;colon", "dot."])
def test_hostile_run_names_are_rejected(name, tmp_path):
    with pytest.raises(ValueError, match="is not allowed"):
        check_run_name(name)


def test_a_failed_save_leaves_no_half_run(tmp_path, monkeypatch):
    tok = Tokenizer.train("word", TEXTS, vocab_size=40)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(checkpoint, "_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_run(tmp_path, "half", model, TrainConfig(), tok, {})
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_is_never_overwritten(saved_run):
    path, model, tok = saved_run
    with pytest.raises(ValueError, match="already exists"):
        save_run(path.parent, path.name, model, TrainConfig(), tok, {})


def test_non_finite_metrics_are_stored_as_null(tmp_path):
    tok = Tokenizer.train("word", TEXTS, vocab_size=40)
    model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))
    path = save_run(tmp_path, "nan", model, TrainConfig(), tok, {"val_loss": float("inf"), "h": [float("nan"), 1.0]})
    assert json.loads((path / "metrics.json").read_text()) == {"val_loss": None, "h": [None, 1.0]}


KILLED_SAVE = """
import sys, time
from minitx import checkpoint
from minitx.config import TrainConfig
from minitx.encoder import SentimentClassifier
from minitx.tokenizer import Tokenizer
from tests.conftest import tiny_config

tok = Tokenizer.train("word", ["a good film", "a bad film"] * 10, vocab_size=40)
model = SentimentClassifier(tiny_config(vocab_size=tok.vocab_size))
checkpoint.Tokenizer.save = lambda self, path: time.sleep(60)   # hang mid-save, after the weights
checkpoint.save_run(sys.argv[1], "killed", model, TrainConfig(), tok, {})
"""


def test_a_killed_save_leaves_no_half_run(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(tmp_path)], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".saving-killed-*/model.safetensors")):
            assert time.monotonic() < deadline and child.poll() is None, "the save never started"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert not (tmp_path / "killed").exists()
    assert [p.name.startswith(".saving-") for p in tmp_path.iterdir()] == [True]   # hidden, never a run


def test_run_folders_lists_newest_first_and_skips_saves_in_progress(saved_run, tmp_path):
    path, model, tok = saved_run
    newer = save_run(tmp_path, "run-2", model, TrainConfig(), tok, {})
    os.utime(path, (1, 1))
    (tmp_path / ".saving-run-3-abc").mkdir()
    assert checkpoint.run_folders(tmp_path) == [newer, path]
    assert checkpoint.run_folders(tmp_path / "nowhere") == []


def test_rename_delete_and_zip_stay_inside_the_folder(saved_run, tmp_path):
    import io
    import zipfile

    from minitx.checkpoint import delete_run, describe_runs, rename_run, run_zip

    saved_run = saved_run[0]
    folder, name = saved_run.parent, saved_run.name
    archive = zipfile.ZipFile(io.BytesIO(run_zip(folder, name)))
    assert sorted(archive.namelist()) == sorted(f"{name}/{f}" for f in checkpoint.RUN_FILES)
    renamed = rename_run(folder, name, "renamed")
    assert renamed.is_dir() and not saved_run.exists()
    for hostile in ("../outside", "/tmp", "a/b", ".."):
        with pytest.raises(ValueError, match="not allowed"):
            rename_run(folder, "renamed", hostile)
        with pytest.raises(ValueError, match="not allowed"):
            delete_run(folder, hostile)
    with pytest.raises(ValueError, match="no run named"):
        delete_run(folder, "missing")
    assert [i.name for i in describe_runs(folder) if i.readable] == ["renamed"]
    delete_run(folder, "renamed")
    assert not renamed.exists() and folder.exists()


def test_describe_runs_lists_broken_runs_with_the_reason(saved_run):
    from minitx.checkpoint import describe_runs

    saved_run = saved_run[0]
    broken = saved_run.parent / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    infos = {i.name: i for i in describe_runs(saved_run.parent)}
    assert infos[saved_run.name].readable and infos[saved_run.name].metrics is not None
    assert not infos["broken"].readable and "config.json" in infos["broken"].error
