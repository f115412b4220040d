"""Saving and loading a trained run: a folder of four plain files, no pickles.

    checkpoints/<run name>/
        model.safetensors   the weights (safetensors: tensors only, no code can hide in it)
        config.json         {"model": ModelConfig, "train": TrainConfig}
        tokenizer.json      the exact tokenizer the model was trained with
        metrics.json        status, accuracies, the whole training history

A run is written into a hidden temporary folder beside its final place and
renamed into place in one step, so a crash mid-save leaves either the whole
run or nothing. Loading rebuilds the model from config.json, and any missing,
truncated or mismatched file raises a ValueError that names it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .config import ModelConfig, TrainConfig
from .model import build_model
from .tokenizer import Tokenizer

MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, METRICS_FILE = (
    "model.safetensors", "config.json", "tokenizer.json", "metrics.json")
RUN_FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, METRICS_FILE)
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: letters, digits, '.', '_' and '-', at most 100."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or name.endswith("."):
        raise ValueError(
            f"run name {name!r} is not allowed: use 1 to 100 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit.")
    return name


@dataclass
class LoadedRun:
    path: Path
    model: torch.nn.Module               # a SentimentClassifier or a CausalLM, as config.json says
    model_config: ModelConfig
    train_config: TrainConfig
    tokenizer: Tokenizer
    metrics: dict


def _json_safe(value):
    """JSON has no NaN or infinity: such numbers are stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False), encoding="utf-8")


def save_run(directory: str | os.PathLike, name: str, model: torch.nn.Module,
             train_config: TrainConfig, tokenizer: Tokenizer, metrics: dict, resume=None,
             replace: bool = False) -> Path:
    """Write a run folder atomically and return its path; with `resume` (a minitx.train.resume
    ResumeState), also what continuing it needs. An existing run is overwritten only with replace=True
    (a continued run saving over itself), and then only once the new folder is written whole."""
    from .train.resume import write_resume_state

    directory = Path(directory)
    final = directory / check_run_name(name)
    if final.exists() and not replace:
        raise ValueError(f"a run named {name!r} already exists in {directory}.")
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".saving-{name}-", dir=directory))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / MODEL_FILE))
        _write_json(staging / CONFIG_FILE, {"model": model.cfg.to_dict(), "train": train_config.to_dict()})
        tokenizer.save(staging / TOKENIZER_FILE)
        _write_json(staging / METRICS_FILE, metrics)
        if resume is not None:
            write_resume_state(staging, resume)
        put_in_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def put_in_place(staging: Path, final: Path) -> None:
    """Rename a whole run folder written beside final (in the same folder) to final, replacing the
    run there if any: the run appears whole, or not at all."""
    if final.exists():              # the old folder steps aside, the new one takes its place, the old goes
        old = Path(tempfile.mkdtemp(prefix=f".replaced-{final.name}-", dir=final.parent))
        os.rename(final, old / final.name)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, final)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path.name} is missing from {path.parent}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} in {path.parent} is unreadable: {error}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} in {path.parent} does not hold a JSON object.")
    return data


def read_run_configs(path: str | os.PathLike) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of a saved run, validated."""
    path = Path(path)
    saved = _read_json(path / CONFIG_FILE)
    try:
        return ModelConfig.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{CONFIG_FILE} in {path} does not describe a valid run: {error}") from None


def read_metrics(path: str | os.PathLike) -> dict:
    return _read_json(Path(path) / METRICS_FILE)


def _mismatch(path: Path, shapes: dict[str, tuple[int, ...]], model_config: ModelConfig) -> str | None:
    """How the saved tensors' names and shapes disagree with the model config.json describes."""
    with torch.device("meta"):                 # shapes only: nothing is allocated or initialised
        expected = {k: tuple(v.shape) for k, v in build_model(model_config).state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        return (f"{MODEL_FILE} in {path} does not match {CONFIG_FILE}: "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}.")
    for key, shape in shapes.items():
        if shape != expected[key]:
            return (f"{MODEL_FILE} in {path}: tensor {key} has shape {shape}, "
                    f"but {CONFIG_FILE} needs {expected[key]}.")
    return None


def check_weights(path: str | os.PathLike, model_config: ModelConfig) -> None:
    """Read only the header of a run's weights file: ValueError if it is missing, damaged
    (truncated, or not safetensors at all) or disagrees with the config. Cheap: no tensor is read."""
    path = Path(path)
    weights = path / MODEL_FILE
    if not weights.is_file():
        raise ValueError(f"{MODEL_FILE} is missing from {path}.")
    try:
        with safe_open(str(weights), "pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error type on damaged files
        raise ValueError(f"{MODEL_FILE} in {path} is unreadable (truncated or corrupted?): {error}") from None
    problem = _mismatch(path, shapes, model_config)
    if problem:
        raise ValueError(problem)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a saved run's model, tokenizer and metrics; ValueError names any bad file."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"there is no run folder at {path}.")
    model_config, train_config = read_run_configs(path)
    tokenizer = Tokenizer.load(path / TOKENIZER_FILE) if (path / TOKENIZER_FILE).is_file() else None
    if tokenizer is None:
        raise ValueError(f"{TOKENIZER_FILE} is missing from {path}.")
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(f"{TOKENIZER_FILE} in {path} has {tokenizer.vocab_size} tokens but the "
                         f"model expects {model_config.vocab_size}.")
    metrics = read_metrics(path)
    check_weights(path, model_config)          # names and shapes, from the file's header
    try:
        state = load_file(str(path / MODEL_FILE))
    except Exception as error:  # changed since, or damaged past its header
        raise ValueError(f"{MODEL_FILE} in {path} is unreadable: {error}") from None
    for key, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{MODEL_FILE} in {path}: tensor {key} holds NaN or infinite values.")
    model = build_model(model_config)
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedRun(path, model, model_config, train_config, tokenizer, metrics)


def run_folders(directory: str | os.PathLike) -> list[Path]:
    """Run folders under directory, newest first; hidden folders (saves in progress) are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    runs = [p for p in directory.iterdir()
            if p.is_dir() and not p.name.startswith(".") and _RUN_NAME.fullmatch(p.name)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def run_path(directory: str | os.PathLike, name: str) -> Path:
    """The folder of the run called name, which must be a plain name inside directory."""
    return Path(directory) / check_run_name(name)


def named_run(run: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """The run a command line names: a folder holding a run's config.json, else the run called `run` in directory."""
    folder = Path(run)
    if (folder / CONFIG_FILE).is_file():
        return folder
    if len(folder.parts) > 1:           # a path, not a name: say so, not that the name is not allowed
        raise ValueError(f"there is no run folder at {folder} (no {CONFIG_FILE} in it).")
    return run_path(directory, str(run))


def _existing_run(directory: str | os.PathLike, name: str) -> Path:
    path = run_path(directory, name)
    if not path.is_dir():
        raise ValueError(f"there is no run named {name!r} in {directory}.")
    return path


def rename_run(directory: str | os.PathLike, old: str, new: str) -> Path:
    """Give a saved run a new name; the new name must be allowed and free."""
    source, target = _existing_run(directory, old), run_path(directory, new)
    if target.exists():
        raise ValueError(f"a run named {new!r} already exists.")
    os.rename(source, target)
    return target


def delete_run(directory: str | os.PathLike, name: str) -> None:
    """Delete a saved run folder. Only a run folder: never anything outside directory."""
    shutil.rmtree(_existing_run(directory, name))


def run_zip(directory: str | os.PathLike, name: str) -> bytes:
    """The run's folder as a zip archive, for downloading: <name>/<file> for each file."""
    path = _existing_run(directory, name)
    buffer = tempfile.SpooledTemporaryFile()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.iterdir()):
            if file.is_file() and not file.is_symlink():
                archive.write(file, f"{name}/{file.name}")
    buffer.seek(0)
    return buffer.read()


def clean_stale_saves(directory: str | os.PathLike, older_than: float = 600.0) -> list[str]:
    """Remove hidden half-written saves (left by a killed process) older than older_than seconds.
    A run that a killed save had moved aside to replace it, and that nothing replaced, goes back."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in [*directory.glob(".saving-*"), *directory.glob(".replaced-*")]:
        if not path.is_dir() or time.time() - path.stat().st_mtime <= older_than:
            continue
        for run in path.iterdir() if path.name.startswith(".replaced-") else ():
            if run.is_dir() and not (directory / run.name).exists():
                os.rename(run, directory / run.name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


@dataclass
class RunInfo:
    """One row of the runs table: what config.json and metrics.json say, or why they cannot."""

    name: str
    path: Path
    modified: float
    model_config: ModelConfig | None = None
    train_config: TrainConfig | None = None
    metrics: dict | None = None
    error: str | None = None

    @property
    def readable(self) -> bool:
        return self.error is None


def describe_runs(directory: str | os.PathLike) -> list[RunInfo]:
    """Every run folder, newest first, checked without reading the weights (their file's header
    against config.json); unreadable ones say why."""
    infos = []
    for path in run_folders(directory):
        info = RunInfo(path.name, path, path.stat().st_mtime)
        try:
            model_config, train_config = read_run_configs(path)
            metrics = read_metrics(path)
            if not (path / TOKENIZER_FILE).is_file():
                raise ValueError(f"{TOKENIZER_FILE} is missing from {path}.")
            check_weights(path, model_config)
            info.model_config, info.train_config, info.metrics = model_config, train_config, metrics
        except ValueError as error:
            info.error = str(error)
        infos.append(info)
    return infos
