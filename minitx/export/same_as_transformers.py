"""Same as transformers? A minitx model exported to a Hugging Face folder, loaded back by transformers,
and both run on one text: the largest logit difference, each one's top next tokens, each one's greedy
continuation. The question TransformerLens users ask first, answered on the learner's own model."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass

import torch

from ..decoder import CausalLM
from ..generate import generate
from ..tokenizer import Tokenizer
from .exportable import export_problem
from .hf_folder import write_hf_folder

INSTALL = "pip install transformers==5.25.0"


def transformers_missing() -> str | None:
    """The command that adds transformers, if it is not installed; None if it is."""
    return INSTALL if importlib.util.find_spec("transformers") is None else None


def in_transformers(model: CausalLM, tokenizer: Tokenizer, name: str):
    """The model as transformers loads it: written as a Hugging Face folder, read by
    AutoModelForCausalLM.from_pretrained, in eval mode. ValueError if it cannot be written as a Llama."""
    from transformers import AutoModelForCausalLM

    problem = export_problem(model.cfg, tokenizer)
    if problem:
        raise ValueError(problem)
    with tempfile.TemporaryDirectory(prefix="minitx-hf-") as folder:
        write_hf_folder(model, tokenizer, folder, name)
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@dataclass
class Comparison:
    largest_difference: float           # max |logit_minitx - logit_transformers| over every position and token
    top_minitx: list[tuple[int, float]]         # the top next tokens after the text, (id, probability)
    top_transformers: list[tuple[int, float]]
    continuation_minitx: list[int]              # greedy, new_tokens long (or to the end-of-text token)
    continuation_transformers: list[int]
    seconds: float                              # both forward passes and both continuations


@torch.inference_mode()
def compare(model: CausalLM, theirs, ids: list[int], new_tokens: int = 16, top: int = 5, engine=None) -> Comparison:
    """Run minitx's model and transformers' on the same ids: logits, top tokens, and greedy continuations of
    new_tokens each (neither stops early, so the two are the same length)."""
    if not ids:
        raise ValueError("the text is empty: give both models something to read.")
    started = time.perf_counter()
    batch = torch.tensor([ids])
    ours, their_logits = model(batch).logits[0].float(), theirs(batch).logits[0].float()
    difference = float((ours - their_logits).abs().max())
    best = [logits[-1].softmax(-1).topk(top) for logits in (ours, their_logits)]
    mine = generate(model, ids, new_tokens, temperature=0, n_top=0, eos_id=None, engine=engine).new_ids
    generated = theirs.generate(batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                pad_token_id=0)[0, len(ids):].tolist()
    return Comparison(difference, *[[(int(i), float(p)) for p, i in zip(b.values, b.indices)] for b in best],
                      mine, generated, time.perf_counter() - started)
