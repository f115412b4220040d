"""The learner's functions inside SmolLM2: the same answer for a right function, another for a wrong one."""

from __future__ import annotations

import pytest

from minitx.labs.cli import main
from tests.lab_sources import RIGHT, WRONG
from tests.pretrained_support import load_smollm2

ROPE_WITHOUT_BASE = '''
import torch

def apply_rope(x, start):
    T, Dh = x.size(-2), x.size(-1)
    theta = 10000.0 ** (-torch.arange(0, Dh, 2).float() / Dh)
    angle = torch.arange(start, start + T).float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()], -1).flatten(-2)
'''
ROPE_WITH_BASE = ROPE_WITHOUT_BASE.replace("def apply_rope(x, start):", "def apply_rope(x, start, base=10000.0):") \
    .replace("10000.0 ** (-torch", "base ** (-torch")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return load_smollm2(tmp_path_factory)


def write(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return str(path)


def test_try_exits_0_for_a_right_attention_and_1_without_the_scale(smollm2, tmp_path, capsys):
    prompt = ["--model", "smollm2-135m", "--prompt", "The capital of France is", "--max-new-tokens", "6"]
    assert main(["try", "attention", write(tmp_path, "right", RIGHT["attention"]), *prompt]) == 0
    same = capsys.readouterr().out
    assert "Paris" in same and "the same text" in same
    label, no_scale, _ = WRONG["attention"][0]
    assert label == "no 1/sqrt(Dh)"
    assert main(["try", "attention", write(tmp_path, "wrong", no_scale), *prompt]) == 1
    differs = capsys.readouterr().out
    assert "a different text" in differs
    difference = float(differs.split("after the prompt: ")[1].split()[0])
    assert difference > 1.0                                                  # far beyond rounding


def test_rope_needs_a_base_inside_smollm2_and_runs_with_one(smollm2, tmp_path, capsys):
    prompt = ["--prompt", "The capital of France is", "--max-new-tokens", "4"]
    assert main(["try", "rope", write(tmp_path, "nobase", ROPE_WITHOUT_BASE), *prompt]) == 1
    assert "give it a third parameter, base" in capsys.readouterr().out
    assert main(["try", "rope", write(tmp_path, "base", ROPE_WITH_BASE), *prompt]) == 0


@pytest.mark.parametrize("args, message", [
    (["try", "sinusoidal", "x.py", "--prompt", "x"], "not a function the decoder calls"),
    (["try", "attention", "no-such-file.py", "--prompt", "x"], "does not exist"),
    (["try", "attention", "FILE", "--prompt", "x", "--max-new-tokens", "500"], "--max-new-tokens must be from 1"),
    (["try", "attention", "FILE", "--prompt", "x", "--model", "nowhere"], "nowhere is neither a file"),
])
def test_try_refuses_unusable_input_with_one_line_and_exit_2(tmp_path, capsys, args, message):
    args = [write(tmp_path, "right", RIGHT["attention"]) if a == "FILE" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
