"""What the concept pages show with a learner's function: the real model run twice, once with
minitx's function and once with theirs, and what came out of each.

Runs in the learner's process (`minitx.labs.learner_process`), which is why every answer is plain
JSON-ready data (`minitx.sandbox.wire.encode`). The page sends the model (a checkpoint's folder, or a
config and seed for random weights, as `ui.resources.random_model` builds it) and token ids. The
learner's functions go in at the model's swap points (`model.using`, `minitx.labs.swap_in`).
"""

from __future__ import annotations

import torch

from ..attention import attention_mask, explicit_attention, repeat_kv
from ..bpe import learn_merges
from ..checkpoint import load_run
from ..config import ModelConfig
from ..generate import generate
from ..inspect import gqa_walkthrough
from ..model import build_model
from ..moe import expert_choices
from ..sandbox.wire import encode
from .lab import Lab
from .swap_in import swaps_for

MAX_NEW_TOKENS = 40


def load_model(spec: dict) -> torch.nn.Module:
    """{"checkpoint": folder} or {"config": ModelConfig as a dict, "seed": 0}, in eval mode."""
    if "checkpoint" in spec:
        return load_run(spec["checkpoint"]).model.eval()
    torch.manual_seed(spec.get("seed", 0))
    return build_model(ModelConfig.from_dict(spec["config"])).eval()


def _forward(model, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    if model.cfg.is_lm:
        out = model(ids, need_weights=True)
        return out.logits, out.attentions
    out = model.run(ids, need_weights=True)
    return out.logits, out.attentions


def _first_experts(model) -> list[torch.Tensor]:
    """Each mixture-of-experts layer's first choice per token in the last forward pass.  # L x (T,)"""
    return [c[0, :, 0] for c in expert_choices(model)]


@torch.no_grad()
def in_model(lab: Lab, functions: dict, request: dict) -> dict:
    """A review (classifier) or a prompt (language model) through the model with minitx's
    function, then with the learner's: the logits' largest difference, what each predicts or
    writes (greedy), and the last layer's attention of each."""
    model = load_model(request["model"])
    ids = torch.tensor([request["ids"]])                                      # (1, T)
    ours_logits, ours_attention = _forward(model, ids)
    experts_ours = _first_experts(model)
    with model.using(**swaps_for(functions)):
        yours_logits, yours_attention = _forward(model, ids)
        experts_yours = _first_experts(model)
    answer = {"task": model.cfg.task, "largest_difference": float((ours_logits - yours_logits).abs().max()),
              "attention_ours": ours_attention[-1][0], "attention_yours": yours_attention[-1][0],
              "experts_ours": experts_ours, "experts_yours": experts_yours}
    if model.cfg.is_lm:
        n_new = min(int(request.get("new_tokens", 20)), MAX_NEW_TOKENS, model.cfg.max_len - ids.size(1))
        eos = request.get("eos_id")
        answer["new_ids_ours"] = generate(model, ids[0].tolist(), n_new, temperature=0, eos_id=eos).new_ids
        with model.using(**swaps_for(functions)):
            answer["new_ids_yours"] = generate(model, ids[0].tolist(), n_new, temperature=0, eos_id=eos).new_ids
    else:
        answer["probabilities_ours"] = ours_logits.softmax(-1)[0]
        answer["probabilities_yours"] = yours_logits.softmax(-1)[0]
    return encode(answer)


@torch.no_grad()
def attention_heads(lab: Lab, functions: dict, request: dict) -> dict:
    """The attention page's heads (one seeded attention layer on the page's embeddings), with
    the learner's attention or repeat_kv: their weights, and how far they are from minitx's."""
    cfg = ModelConfig.from_dict(request["config"])
    x, key_padding_mask = request["x"], request.get("key_padding_mask")
    walk = gqa_walkthrough(cfg, x, key_padding_mask, causal=request.get("causal", False))
    mask = attention_mask(key_padding_mask, x.size(1), request.get("causal", False))
    repeat, n_rep = functions.get("repeat_kv", repeat_kv), cfg.n_heads // cfg.n_kv_heads
    attend = functions.get("attention", explicit_attention)
    out, weights = attend(walk.q, repeat(walk.k, n_rep), repeat(walk.v, n_rep), mask)
    return encode({"weights": weights, "largest_difference": float((weights - walk.weights).abs().max()),
                   "output_difference": float((out - walk.explicit).abs().max())})


@torch.no_grad()
def sampled(lab: Lab, functions: dict, request: dict) -> dict:
    """The same generation (prompt, settings, seed) with minitx's sampler or cache step, then the
    learner's: the tokens each wrote."""
    model = load_model(request["model"])
    settings = {k: request[k] for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")}
    settings["max_new_tokens"] = min(settings["max_new_tokens"], MAX_NEW_TOKENS)
    ours = generate(model, request["ids"], eos_id=request.get("eos_id"), **settings)
    with model.using(**swaps_for(functions)):
        yours = generate(model, request["ids"], eos_id=request.get("eos_id"), **settings)
    return encode({"new_ids_ours": ours.new_ids, "new_ids_yours": yours.new_ids,
                   "probabilities_ours": ours.probabilities, "probabilities_yours": yours.probabilities})


def write_with(pretrained, ids: list[int], max_new_tokens: int, sampling: dict, functions: dict) -> dict:
    """A pretrained model's continuation of ids with these functions at their swap points ({}: minitx's
    own), through CausalLM.forward and its KV cache, and the logits after the prompt's last token."""
    model = pretrained.model
    with model.using(**swaps_for(functions)), torch.inference_mode():
        first = model(torch.tensor([ids]), last_only=True).logits[0, -1]                  # (V,)
        out = generate(model, ids, max_new_tokens, seed=0, eos_id=pretrained.tokenizer.stop_ids, n_top=0,
                       **sampling)
    return {"ids": out.new_ids, "first_logits": encode(first.float())}


def merges(lab: Lab, functions: dict, request: dict) -> dict:
    """The first n BPE merges learned with the learner's merge step from the page's word counts."""
    words = {tuple(symbols): int(count) for symbols, count in request["words"]}
    return encode({"merges": learn_merges(words, int(request["n"]), merge=functions[lab.name])})


DEMOS = {
    "attention": {"heads": attention_heads, "model": in_model},
    "repeat_kv": {"heads": attention_heads, "model": in_model},
    "rope": {"model": in_model},
    "rms_norm": {"model": in_model},
    "causal_mask": {"model": in_model},
    "block": {"model": in_model},
    "moe_route": {"model": in_model},
    "top_p": {"generate": sampled},
    "kv_step": {"generate": sampled},
    "bpe_merge": {"merges": merges},
}


def run(lab: Lab, functions, request: dict) -> dict:
    """The demo `request["kind"]` of this lab, with the learner's functions ({lab name: function}:
    this lab's, and any others to put in the model at the same time; or this lab's alone)."""
    kinds = DEMOS.get(lab.name, {})
    if request.get("kind") not in kinds:
        raise ValueError(f"lab {lab.name} has no demo {request.get('kind')!r}; it has {', '.join(kinds) or 'none'}.")
    if callable(functions):
        functions = {lab.name: functions}
    return kinds[request["kind"]](lab, functions, request)
