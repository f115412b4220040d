"""Stop a run and continue it: the same weights, bit for bit, and the same history as a run that never stopped."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
from safetensors.torch import load_file

from minitx.checkpoint import load_run
from minitx.presets import PRESETS
from minitx.train import check_same_run, resume_configs, run_training
from minitx.train.resume import OPTIMIZER_FILE, RESUME_FILE

CLASSIFIER = (PRESETS["tiny"][0], PRESETS["tiny"][1].replace(train_size=400, test_size=100, epochs=2))
LANGUAGE = (PRESETS["lm-tiny"][0], PRESETS["lm-tiny"][1].replace(train_size=120, test_size=10, eval_every=6))


def weights(folder, name="model.safetensors") -> dict:
    return load_file(str(folder / name))


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history(folder) -> dict:
    """What a run did, without the wall-clock numbers (elapsed, tokens/s) that differ from run to run."""
    saved = json.loads((folder / "metrics.json").read_text())["history"]
    timing = {"elapsed", "tokens_per_second"}
    return {part: [{k: v for k, v in event.items() if k not in timing} for event in events]
            for part, events in saved.items()}


def continued(folder, **changes):
    model_cfg, train_cfg = resume_configs(folder, changes.get("epochs"))
    return run_training(model_cfg, train_cfg, resume=folder)


class StopAt:
    """A callback that asks the run to stop once it has taken `step` steps: the stop lands before
    the next step, or in the middle of an evaluation due at that step."""

    def __init__(self, step: int):
        self.step, self.event = step, threading.Event()

    def on_step(self, event):
        if event["step"] >= self.step:
            self.event.set()


@pytest.mark.parametrize("stop_at", [7, 13], ids=["mid-epoch", "in the second epoch"])
def test_a_classifier_stopped_and_continued_ends_as_if_it_never_stopped(imdb, tmp_path, stop_at):
    whole = run_training(*CLASSIFIER, checkpoint_dir=tmp_path, run_name="whole")
    stopped = run_training(*CLASSIFIER, checkpoint_dir=tmp_path, run_name="parts", stop_after_steps=stop_at)
    assert stopped.result.status == "stopped" and stopped.result.steps == stop_at
    again = continued(tmp_path / "parts")
    assert again.result.status == "finished" and again.result.steps == whole.result.steps
    assert same_weights(weights(tmp_path / "parts"), weights(tmp_path / "whole"))            # the chosen model
    assert same_weights(weights(tmp_path / "parts", "last.safetensors"), weights(tmp_path / "whole", "last.safetensors"))
    assert history(tmp_path / "parts") == history(tmp_path / "whole")
    parts, whole_metrics = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("parts", "whole"))
    assert parts["test_accuracy"] == whole_metrics["test_accuracy"] and parts["confusion"] == whole_metrics["confusion"]
    assert parts["attention_snapshots"]["steps"] == whole_metrics["attention_snapshots"]["steps"]


@pytest.mark.parametrize("windows", [False, True], ids=["fixed blocks", "random windows"])
def test_a_language_model_stopped_during_an_evaluation_continues_exactly(imdb, tmp_path, windows):
    """Stopped at step 12, where an evaluation is due: the stop cuts that evaluation short, and the
    continued run makes it first."""
    model_cfg, train_cfg = LANGUAGE[0], LANGUAGE[1].replace(random_windows=windows)
    whole = run_training(model_cfg, train_cfg, checkpoint_dir=tmp_path, run_name="whole")
    stop = StopAt(12)
    stopped = run_training(model_cfg, train_cfg, [stop], stop.event, checkpoint_dir=tmp_path, run_name="parts")
    assert "during an evaluation" in stopped.result.reason
    assert json.loads((tmp_path / "parts" / RESUME_FILE).read_text())["position"]["pending_eval"] is not None
    continued(tmp_path / "parts")
    assert same_weights(weights(tmp_path / "parts"), weights(tmp_path / "whole"))
    assert history(tmp_path / "parts") == history(tmp_path / "whole")
    parts, whole_metrics = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("parts", "whole"))
    assert parts["test_bits_per_char"] == whole_metrics["test_bits_per_char"] and parts["sample"] == whole_metrics["sample"]
    assert whole.result.steps == parts["steps"]


def test_a_finished_run_continues_for_more_epochs_and_not_for_fewer(imdb, tmp_path):
    run_training(*CLASSIFIER, checkpoint_dir=tmp_path, run_name="run")
    with pytest.raises(ValueError, match="finished all its 2 epoch"):
        resume_configs(tmp_path / "run")
    steps_per_epoch = json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] // 2
    more = continued(tmp_path / "run", epochs=3)
    assert more.result.status == "finished" and more.result.steps == 3 * steps_per_epoch
    assert len(history(tmp_path / "run")["epochs"]) == 3


def test_a_continued_run_refuses_to_become_another_run(imdb, tmp_path):
    run_training(*CLASSIFIER, checkpoint_dir=tmp_path, run_name="run", stop_after_steps=3)
    model_cfg, train_cfg = resume_configs(tmp_path / "run")
    for changed, field in ((model_cfg.replace(d_model=64, n_heads=2), None), (None, train_cfg.replace(tokenizer="bpe"))):
        with pytest.raises(ValueError, match="would make it another run"):
            check_same_run(tmp_path / "run", changed or model_cfg, field or train_cfg)
    with pytest.raises(ValueError, match="more, not fewer"):
        check_same_run(tmp_path / "run", model_cfg, train_cfg.replace(epochs=1))


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_optimizer_file_is_named_and_the_run_still_predicts(imdb, tmp_path, damage):
    run_training(*CLASSIFIER, checkpoint_dir=tmp_path, run_name="run", stop_after_steps=3)
    optimizer = tmp_path / "run" / OPTIMIZER_FILE
    if damage == "missing":
        optimizer.unlink()
    else:
        optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(ValueError) as error:
        resume_configs(tmp_path / "run")
    assert OPTIMIZER_FILE in str(error.value) and "\n" not in str(error.value)
    assert load_run(tmp_path / "run").model is not None


def test_a_run_saved_before_runs_could_be_continued_says_so_and_still_loads(trained_runs, tmp_path):
    old = shutil.copytree(trained_runs / "tiny", tmp_path / "old")
    for name in ("last.safetensors", OPTIMIZER_FILE, RESUME_FILE):
        (old / name).unlink()
    with pytest.raises(ValueError, match="saved before runs could be continued"):
        resume_configs(old)
    assert load_run(old).model is not None


def test_the_command_line_stops_after_n_steps_and_continues_to_the_same_weights(imdb, tmp_path, capsys):
    from minitx.cli import main

    common = ["--preset", "tiny", "--train-size", "400", "--test-size", "100", "--epochs", "2", "--quiet",
              "--checkpoint-dir", str(tmp_path)]
    assert main([*common, "--stop-after-steps", "9", "--run-name", "a"]) == 0
    assert main(["--resume", "a", "--checkpoint-dir", str(tmp_path), "--quiet"]) == 0
    assert main([*common, "--run-name", "b"]) == 0
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    capsys.readouterr()
    for args, message in ((["--resume", "a", "--d-model", "64"], "--d-model would make it another run"),
                          (["--resume", "nothing-here"], "there is no run named 'nothing-here'"),
                          (["--resume", "a", "--epochs", "3", "--run-name", "c"], "leave out --run-name")):
        with pytest.raises(SystemExit) as done:
            main([*args, "--checkpoint-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_a_run_with_my_attention_in_the_sandbox_stops_and_continues_to_the_same_weights(imdb, tmp_path):
    """Where bwrap runs, a run with the learner's attention trains in the sandbox and the server moves
    what it saved into place: stopping it and continuing it from the registry still ends as one run."""
    import time

    from minitx.labs.training_run import LearnerCodeLauncher
    from minitx.runs import RunRegistry
    from tests.lab_sources import RIGHT

    registry = RunRegistry(tmp_path, training_lock=tmp_path / "lock", launcher=LearnerCodeLauncher())
    mine = {"attention": RIGHT["attention"]}
    try:
        whole = registry.wait(registry.start(*CLASSIFIER, "whole", learner_code=mine), timeout=120)
        assert whole.status == "finished", whole.reason
        parts = registry.start(*CLASSIFIER, "parts", learner_code=mine)
        while registry.snapshot(parts).step < 5 and registry.snapshot(parts).active:
            time.sleep(0.05)
        registry.stop(parts)
        stopped = registry.wait(parts, timeout=60)
        assert stopped.status == "stopped" and stopped.step < whole.step, (stopped.status, stopped.reason)
        again = registry.wait(registry.resume("parts"), timeout=120)
        assert again.status == "finished" and again.checkpoint == str(tmp_path / "parts"), again.reason
    finally:
        registry.shutdown()
    assert same_weights(weights(tmp_path / "parts"), weights(tmp_path / "whole"))
    assert history(tmp_path / "parts") == history(tmp_path / "whole")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # nothing half-saved left
