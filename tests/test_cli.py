import json
import os
import subprocess
import sys
import time

import pytest

from minitx.cli import optional_int, build_parser, configs_from_args, main
from minitx.config import FRACTIONS, MODEL_LIMITS, TRAIN_LIMITS, TrainConfig
from minitx.presets import PRESETS


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "minitx.train", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--d-model", "abc"], "invalid int value: 'abc'"),
    (["--pos-encoding", "alibi"], "invalid choice: 'alibi'"),
    (["--d-model", "100", "--n-heads", "3"], "d_model 100 is not divisible by n_heads 3"),
    (["--n-kv-heads", "3"], "n_kv_heads 3 does not divide n_heads 4"),
    (["--train-size", "5001"], "train_size 5001 is odd"),
    (["--run-name", "../escape"], "run name '../escape' is not allowed"),
])
def test_bad_flags_give_one_line_and_exit_code_2(capsys, args, message):
    code, err = in_process(capsys, *args)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err


def numeric_flags() -> list[tuple[str, str]]:
    """(field, --flag) of every numeric flag the command line has."""
    return [(a.dest, a.option_strings[0]) for a in build_parser()._actions
            if a.type in (int, float, optional_int)]


def limits(field: str) -> tuple:
    if field in FRACTIONS:
        return 0.0, None
    if field == "lr":
        return None, None                       # any positive, finite number
    if field == "stop_after_steps":
        return 1, None
    return TRAIN_LIMITS.get(field) or MODEL_LIMITS[field]


def impossible_values(field: str) -> list[str]:
    low, high = limits(field)
    values = ["nan", "inf", "1e400", "abc", "-1", "0" if field == "lr" else "-0.5"]
    if low is not None and low > 0:
        values.append(str(low - 1))
    if high is not None:
        values.append(str(high + 1))
    if field in FRACTIONS:
        values.append("1")
    return values


# the smallest run there is: a run at one flag's edge takes a second, not minutes
MICRO = ["--preset", "tiny", "--train-size", "40", "--test-size", "20", "--epochs", "1", "--no-save", "--quiet"]


def in_process(capsys, *args) -> tuple[int, str]:
    """The command line in this process (no interpreter to start): its exit code and its
    stderr. A traceback raises."""
    try:
        code = main(list(args))
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


def run_main(capsys, *args) -> tuple[int, str]:
    return in_process(capsys, *MICRO, *args)


def test_every_numeric_flag_is_walked():
    walked = {field for field, _ in numeric_flags()}
    assert len(walked) >= 20 and {"max_len", "d_model", "lr", "seed", "threads", "dropout"} <= walked


@pytest.mark.parametrize("field, flag", numeric_flags())
def test_every_impossible_value_of_every_numeric_flag_is_one_line_and_exit_2(capsys, field, flag):
    for value in impossible_values(field):
        code, err = run_main(capsys, f"{flag}={value}")
        assert code == 2, (flag, value, err)
        assert err.count("\n") == 1 and err.startswith("python -m minitx.train: error:"), (flag, value, err)


@pytest.mark.parametrize("field, flag", numeric_flags())
def test_every_numeric_flag_at_its_edges_trains_or_says_why_in_one_line(imdb, capsys, field, flag):
    """At the lowest value a flag allows (and at the highest, for the sizes a tensor is made
    of), a run either trains or the combination is refused in one line, exit 2: never a traceback.
    --max-len 1 once got past the checks and failed inside the run."""
    low, high = limits(field)
    edges = [low if low is not None else 1e-6]
    if field in ("max_len", "batch_size", "vocab_size"):
        edges.append(high)
    model, train = PRESETS["tiny"]
    already = getattr(model, field, getattr(train, field, None))
    for value in [v for v in edges if v != already]:     # the preset's own value trains in every run here
        code, err = run_main(capsys, f"{flag}={value}")
        assert code == 0 or (code == 2 and err.count("\n") == 1), (flag, value, code, err)


def test_flags_override_the_preset():
    args = build_parser().parse_args(["--preset", "seed", "--n-kv-heads", "1", "--train-size", "all",
                                      "--no-lowercase", "--pos-encoding", "rope"])
    model_cfg, train_cfg = configs_from_args(args)
    assert (model_cfg.d_model, model_cfg.n_layers, model_cfg.n_kv_heads) == (256, 3, 1)
    assert model_cfg.pos_encoding == "rope" and model_cfg.norm_position == "post"
    assert train_cfg.train_size is None and train_cfg.lowercase is False
    assert train_cfg.tokenizer == "wordpiece" and train_cfg.lr == 5e-5


def test_seed_preset_is_the_write_up_recipe():
    model_cfg, train_cfg = configs_from_args(build_parser().parse_args(["--preset", "seed"]))
    assert (model_cfg.d_model, model_cfg.n_heads, model_cfg.n_kv_heads, model_cfg.d_ff,
            model_cfg.n_layers, model_cfg.max_len) == (256, 4, 4, 1024, 3, 512)
    assert (model_cfg.norm, model_cfg.norm_position, model_cfg.pos_encoding, model_cfg.ffn,
            model_cfg.pooling, model_cfg.dropout) == ("layernorm", "post", "sinusoidal", "relu", "mean", 0.1)
    assert (train_cfg.tokenizer, train_cfg.vocab_size, train_cfg.lr, train_cfg.batch_size,
            train_cfg.epochs, train_cfg.train_size, train_cfg.test_size,
            train_cfg.weight_decay) == ("wordpiece", 30_000, 5e-5, 16, 3, 5000, 5000, 0.0)


def test_json_run_end_to_end(imdb, tmp_path):
    done = run_cli("--preset", "quick", "--train-size", "400", "--test-size", "200", "--epochs", "1",
                   "--d-model", "32", "--d-ff", "64", "--max-len", "128", "--json",
                   "--checkpoint-dir", str(tmp_path), "--run-name", "cli-run")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "train_size", "test_size", "epochs", "wall_seconds",
                "tokens_per_second", "checkpoint"):
        assert key in summary
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (summary["train_size"], summary["test_size"], summary["epochs"]) == (400, 200, 1)
    assert summary["checkpoint"] == str(tmp_path / "cli-run")
    assert sorted(p.name for p in (tmp_path / "cli-run").iterdir()) == [
        "config.json", "last.safetensors", "metrics.json", "model.safetensors", "optimizer.safetensors",
        "resume.json", "tokenizer.json"]
    assert "epoch 1/1" in done.stdout


def test_missing_data_is_a_one_line_error(tmp_path):
    env = {**os.environ, "MINITX_IMDB": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "minitx.train", "--no-save", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "MINITX_IMDB" in done.stderr and "go online" in done.stderr


def test_a_run_training_elsewhere_refuses_the_cli_before_it_reads_any_data(capsys, monkeypatch, tmp_path):
    from minitx.training_lock import TrainingLock, default_lock_path

    lock = TrainingLock(default_lock_path())      # conftest points it at this test's own file
    assert lock.acquire({"run": "app-run", "pid": os.getpid(), "checkpoints": "/runs/here"}) is None
    monkeypatch.setenv("MINITX_IMDB", str(tmp_path / "nowhere"))     # a refusal never gets there
    try:
        code, err = in_process(capsys, "--no-save", "--quiet")
    finally:
        lock.release()
    assert code == 1 and err.count("\n") == 1, err
    assert (f"not started: run app-run is training on this machine (minitx process {os.getpid()}, "
            f"saving to /runs/here)") in err
    assert "MINITX_IMDB" not in err


def test_the_cli_holds_the_lock_while_it_trains_so_the_app_refuses_a_start(imdb, tmp_path):
    from minitx.runs import RunBusyError, RunRegistry
    from minitx.training_lock import TrainingLock, default_lock_path
    from tests.conftest import tiny_config

    cli = subprocess.Popen([sys.executable, "-m", "minitx.train", "--preset", "tiny", "--quiet",
                            "--train-size", "400", "--test-size", "100", "--epochs", "2",
                            "--checkpoint-dir", str(tmp_path / "cli"), "--run-name", "cli-held"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lock = TrainingLock(default_lock_path())
    registry = RunRegistry(tmp_path / "app")
    try:
        deadline = time.monotonic() + 60
        while (lock.holder() or {}).get("run") != "cli-held":
            assert cli.poll() is None and time.monotonic() < deadline, cli.communicate()
            time.sleep(0.05)
        busy = registry.busy_reason()
        assert busy.startswith(f"run cli-held is training on this machine (command-line process {cli.pid}, ")
        assert f"saving to {tmp_path / 'cli'}" in busy
        with pytest.raises(RunBusyError, match="run cli-held is training"):
            registry.start(tiny_config(), TrainConfig(train_size=40, test_size=20, epochs=1))
        out, err = cli.communicate(timeout=300)
    finally:
        cli.kill()
        registry.shutdown()
    assert cli.returncode == 0, err
    assert lock.holder() is None                 # let go when the run ended
    assert (tmp_path / "cli" / "cli-held" / "metrics.json").exists()
