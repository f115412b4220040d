r"""From a Llama-family checkpoint's tensors to minitx's `CausalLM`: the names, and one order of rows.

A Llama block is minitx's pre-norm block with RMSNorm, RoPE, grouped-query
attention and a SwiGLU feed-forward, without biases. Each source names the
same tensors its own way; one table per source maps them onto minitx's names.

The one surprise is the order of a head's rows in the query and key
projections. RoPE turns pairs of a head's dimensions, and the sources disagree
on which dimensions pair up. For one head of size Dh = 8 (x_i, y_i is pair i):

    Hugging Face (rotate_half):     x0 x1 x2 x3 y0 y1 y2 y3     pair i = rows i and i + Dh/2
    llama.cpp's GGUF, and minitx:   x0 y0 x1 y1 x2 y2 x3 y3     pair i = rows 2i and 2i + 1

Both turn pair i by the angle position x base^(-2i/Dh), so the two are the same
weights in another order: `interleave_rope_rows` moves a Hugging Face head's
rows into minitx's (llama.cpp's converter does the same when it writes a GGUF
file, which is why a GGUF file's rows need no change). Values are not rotated:
their rows stay where they are.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig

# minitx's name: (Hugging Face's name, GGUF's name); {i} is the layer
LAYER_NAMES = {
    "attention_norm.weight": ("input_layernorm.weight", "attn_norm.weight"),
    "attention.q_proj.weight": ("self_attn.q_proj.weight", "attn_q.weight"),
    "attention.k_proj.weight": ("self_attn.k_proj.weight", "attn_k.weight"),
    "attention.v_proj.weight": ("self_attn.v_proj.weight", "attn_v.weight"),
    "attention.out_proj.weight": ("self_attn.o_proj.weight", "attn_output.weight"),
    "ffn_norm.weight": ("post_attention_layernorm.weight", "ffn_norm.weight"),
    "feed_forward.gate.weight": ("mlp.gate_proj.weight", "ffn_gate.weight"),
    "feed_forward.up.weight": ("mlp.up_proj.weight", "ffn_up.weight"),
    "feed_forward.down.weight": ("mlp.down_proj.weight", "ffn_down.weight"),
}
MODEL_NAMES = {
    "embedding.weight": ("model.embed_tokens.weight", "token_embd.weight"),
    "final_norm.weight": ("model.norm.weight", "output_norm.weight"),
}
HEAD_NAMES = ("lm_head.weight", "output.weight")     # a separate output head: minitx ties it to the embedding
SOURCES = ("hf", "gguf")


def interleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """A Hugging Face query or key projection (or its bias) with each head's rows in minitx's RoPE order
    (above).  # (heads * Dh, D) -> (heads * Dh, D); (heads * Dh,) -> (heads * Dh,)"""
    rows = weight.reshape(weight.size(0), -1)
    head_dim = rows.size(0) // n_heads
    halves = rows.reshape(n_heads, 2, head_dim // 2, rows.size(1))      # (heads, x|y, Dh/2, D)
    return halves.transpose(1, 2).reshape(weight.shape)                 # x0 y0 x1 y1 ... per head


def halve_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of interleave_rope_rows: minitx's rows in Hugging Face's order (x0 x1 ... y0 y1 ...)."""
    rows = weight.reshape(weight.size(0), -1)
    head_dim = rows.size(0) // n_heads
    pairs = rows.reshape(n_heads, head_dim // 2, 2, rows.size(1))       # (heads, Dh/2, x|y, D)
    return pairs.transpose(1, 2).reshape(weight.shape)


def source_names(cfg: ModelConfig, source: str) -> dict[str, str]:
    """{minitx's name: the source's name} for every tensor of a model of this shape."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}.")
    which = SOURCES.index(source)
    names = {ours: theirs[which] for ours, theirs in MODEL_NAMES.items()}
    prefix = "model.layers.{i}." if source == "hf" else "blk.{i}."
    for i in range(cfg.n_layers):
        for ours, theirs in LAYER_NAMES.items():
            names[f"layers.{i}.{ours}"] = prefix.format(i=i) + theirs[which]
    return names


def bias_names(cfg: ModelConfig, source: str) -> dict[str, str]:
    """{minitx's name: the source's name} of every linear layer's bias (a model with cfg.bias)."""
    return {ours.removesuffix("weight") + "bias": theirs.removesuffix("weight") + "bias"
            for ours, theirs in source_names(cfg, source).items() if ours.startswith("layers.") and "norm" not in ours}


def to_minitx(tensors: dict, cfg: ModelConfig, source: str) -> dict:
    """minitx's state dict from a source's tensors, in float32 (a GGUF matrix kept in its blocks stays
    so), with the query/key rows of a Hugging Face checkpoint put in minitx's order. A missing tensor,
    an untied output head or a tensor minitx has no place for raises ValueError naming it. A model that
    minitx exported with scaled token vectors (cfg.scale_embeddings) keeps the unscaled table as its
    output head: that is the table, and the scaled input copy is left."""
    left = dict(tensors)
    state = {}
    names = source_names(cfg, source) | (bias_names(cfg, source) if cfg.bias else {})
    if cfg.scale_embeddings:
        head = next((name for name in HEAD_NAMES if name in left), None)
        if head is None:
            raise ValueError("the checkpoint scales its token vectors, as minitx exports them, but has no output "
                             "head with the unscaled table.")
        left.pop(names["embedding.weight"], None)
        names["embedding.weight"] = head
    for ours, theirs in names.items():
        if theirs not in left:
            raise ValueError(f"the checkpoint has no tensor {theirs!r}, which minitx's {ours} needs.")
        tensor = left.pop(theirs)
        tensor = tensor.float() if isinstance(tensor, torch.Tensor) else tensor
        if source == "hf" and ours.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            tensor = interleave_rope_rows(tensor, cfg.n_heads if "q_proj" in ours else cfg.n_kv_heads)
        state[ours] = tensor
    for head in HEAD_NAMES:
        if head in left and not _same(left.pop(head), state["embedding.weight"]):
            raise ValueError(f"the checkpoint's output head {head!r} is not its embedding table: minitx's "
                             f"CausalLM ties the two, so it cannot run this model.")
    if left:
        extra = ", ".join(sorted(left)[:5])
        raise ValueError(f"minitx has no place for {len(left)} of the checkpoint's tensors ({extra}): "
                         f"it is not a plain Llama-family model.")
    return state


def _same(a, b) -> bool:
    """Whether two weights are equal: tensors, or matrices kept in GGUF blocks (minitx.quant.blocks)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a.float(), b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    return a.format == b.format and torch.equal(a.dequantize(), b.dequantize())


def empty_model(cfg: ModelConfig):
    """A CausalLM of this shape whose weights are still to come: on the meta device, no memory, no
    random numbers drawn only to be replaced."""
    from ..decoder import CausalLM

    with torch.device("meta"):
        return CausalLM(cfg).eval()


def load_into_model(state: dict[str, torch.Tensor], cfg: ModelConfig):
    """A CausalLM holding these weights (the very tensors), in eval mode."""
    model = empty_model(cfg)
    model.load_state_dict(state, assign=True)
    return model
