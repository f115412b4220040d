"""minitx's weights under a Llama file's names (minitx.pretrained.convert's tables, read the other way)."""

from __future__ import annotations

import torch

from ..decoder import CausalLM
from ..pretrained.convert import HEAD_NAMES, SOURCES, bias_names, halve_rope_rows, source_names


def llama_tensors(model: CausalLM, source: str) -> dict[str, torch.Tensor]:
    """Every weight of the model, float32, named as the source ("hf" or "gguf") names it; Hugging Face's
    query/key rows in its own RoPE order. Scaled token vectors: the input table times sqrt(D), and the
    unscaled table as a separate output head."""
    cfg = model.cfg
    state = {name: tensor.detach().float().cpu() for name, tensor in model.state_dict().items()}
    names = source_names(cfg, source) | (bias_names(cfg, source) if cfg.bias else {})
    missing = sorted(set(names) - set(state))
    unplaced = sorted(set(state) - set(names))
    if missing or unplaced:
        raise ValueError(f"this model's weights do not fit a Llama file: {', '.join((missing + unplaced)[:4])}.")
    out = {}
    for ours, theirs in names.items():
        tensor = state[ours]
        if source == "hf" and ours.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            tensor = halve_rope_rows(tensor, cfg.n_heads if "q_proj" in ours else cfg.n_kv_heads)
        out[theirs] = tensor.contiguous()
    if cfg.scale_embeddings:
        table = state["embedding.weight"]
        out[names["embedding.weight"]] = (table * model.embed_scale).contiguous()     # what embed_ids computes
        out[HEAD_NAMES[SOURCES.index(source)]] = table.clone()
    return out
