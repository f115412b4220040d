"""Stop a run and continue it exactly: what a run folder keeps besides the model chosen on validation.

    checkpoints/<run name>/
        model.safetensors, config.json, tokenizer.json, metrics.json    the run, as ever
        last.safetensors       the weights as they were at the step the run stopped (or ended) at,
                               and what the task kept with its best evaluation
        optimizer.safetensors  AdamW's state: per parameter its two moments and its step count
        resume.json            where it stopped (step; epoch and batch within it; an evaluation that
                               a stop cut short), the best evaluation so far, the random generators'
                               states (torch's, CUDA's, Python's), the optimizer's settings and,
                               for fp16, the gradient scaler's

No pickles: tensors in safetensors, the rest in JSON. Continuing rebuilds the
model, loads all of this, skips the batches the epoch had already taken (each
epoch's order comes from the run's seed and the epoch's number) and trains on;
the steps it takes are the steps the run would have taken had it never stopped.
On a CPU with the same number of threads the final weights are equal bit for
bit (tests/test_resume.py holds them so); on a GPU, kernels that add in a
different order each time (atomics) make it close, not equal.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

LAST_FILE, OPTIMIZER_FILE, RESUME_FILE = "last.safetensors", "optimizer.safetensors", "resume.json"
RESUME_FILES = (LAST_FILE, OPTIMIZER_FILE, RESUME_FILE)
FORMAT = 1
KEPT = "kept."            # in last.safetensors: what the task kept with its best evaluation


@dataclass
class Position:
    """Where a run is: steps taken, and the next batch (epoch, index in it) it would take."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    epochs_without_improvement: int = 0
    pending_eval: dict | None = None          # {"epoch_position": 1.0, "epoch_end": True}: a stop cut it short
    elapsed: float = 0.0                      # seconds the run had trained and evaluated for
    train_seconds: float = 0.0
    train_tokens: int = 0
    best: dict | None = None                  # the evaluation event chosen on validation so far


@dataclass
class ResumeState:
    """Everything continuing a run needs, in memory."""

    position: Position
    weights: dict[str, torch.Tensor]                      # the model at the stop, not the chosen one
    optimizer: dict                                       # torch.optim state_dict
    rng: dict                                             # torch, cuda and python generators
    scaler: dict | None = None
    kept: torch.Tensor | None = None                      # what the task kept with the best evaluation
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)   # the chosen model


def random_states() -> dict:
    state = {"torch": torch.get_rng_state().tolist(), "python": _plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_random_states(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _plain(value):
    """Tuples as lists, for JSON."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _json_number(value):
    """JSON has no NaN or infinity: an evaluation's missing or infinite numbers are stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def write_resume_state(folder: Path, state: ResumeState) -> None:
    """The three resume files into folder (a run folder being saved, before it is renamed into place)."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.weights.items()}
    if state.kept is not None:
        tensors[KEPT + "0"] = state.kept.detach().to("cpu").contiguous()
    save_file(tensors, str(folder / LAST_FILE))
    moments, groups = {}, state.optimizer["param_groups"]
    for index, values in state.optimizer["state"].items():
        for key, tensor in values.items():
            moments[f"{index}.{key}"] = tensor.detach().to("cpu").contiguous()
    save_file(moments, str(folder / OPTIMIZER_FILE))
    settings = {"format": FORMAT, "position": asdict(state.position), "rng": state.rng,
                "optimizer_groups": groups, "scaler": state.scaler}
    (folder / RESUME_FILE).write_text(json.dumps(_json_number(settings)), encoding="utf-8")


def can_resume(folder: Path) -> bool:
    return all((folder / name).is_file() for name in RESUME_FILES)


def read_resume_state(folder: Path, model_file: Path) -> ResumeState:
    """The resume state kept in a run folder; ValueError with one sentence naming the file that is
    missing or damaged (a run saved before runs could be continued has none of them)."""
    folder = Path(folder)
    if not any((folder / name).exists() for name in RESUME_FILES):
        raise ValueError(f"run {folder.name} was saved before runs could be continued: it has no "
                         f"{RESUME_FILE}; start a new run instead.")
    for name in RESUME_FILES:
        if not (folder / name).is_file():
            raise ValueError(f"{name} is missing from {folder}: the run cannot be continued "
                             f"(it still loads for predictions).")
    try:
        settings = json.loads((folder / RESUME_FILE).read_text(encoding="utf-8"))
        position = Position(**settings["position"])
        groups, rng, scaler = settings["optimizer_groups"], settings["rng"], settings.get("scaler")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{RESUME_FILE} in {folder} is damaged ({error}): the run cannot be continued "
                         f"(it still loads for predictions).") from None
    if settings.get("format") != FORMAT:
        raise ValueError(f"{RESUME_FILE} in {folder} is of another minitx version's format: the run "
                         f"cannot be continued.")
    tensors = {}
    for name in (LAST_FILE, OPTIMIZER_FILE) + ((model_file.name,) if position.best else ()):
        try:
            tensors[name] = load_file(str(folder / name))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{name} in {folder} is damaged or cut short ({error}): the run cannot be "
                             f"continued (it still loads for predictions).") from None
    last = tensors[LAST_FILE]
    kept = last.pop(KEPT + "0", None)
    state = {}
    for key, tensor in tensors[OPTIMIZER_FILE].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return ResumeState(position, last, {"state": state, "param_groups": groups}, rng, scaler, kept,
                       tensors.get(model_file.name))
