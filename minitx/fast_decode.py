r"""Writing one token at a time at the speed of memory: the decode step of a CausalLM, arranged for a CPU.

Each new token multiplies one vector by every weight matrix of the model: for
SmolLM2-135M, 135 M weights (538 MB in float32), each read from memory for a
single multiply-add. The processor waits on memory, not on arithmetic, so a
step can take no less than the time to read the weights once.
`CausalLM.forward` with a KV cache computes exactly this step, written to be
read; on a 2-core CPU it reaches about a third of that bound: `nn.Linear`
streams a one-row product on one core, and the ~170 small operations a layer
takes (each a few microseconds of Python and dispatch) add up to more than the
products themselves. This module computes the same step for one sequence:

1) the weights are read in a layout made for one row: every matrix is kept
   transposed, (D_in, D_out), and cut into S slabs along D_in, one per core;
   `torch.bmm` multiplies each slab by its share of the vector in parallel and
   the S partial results are added (`project`);
2) a layer's query, key and value matrices are one matrix, and so are the gate
   and up matrices of its feed-forward network: one pass over memory serves
   all of them, and a layer is about 35 operations instead of 170;
3) the engine is an object the caller asks for, `FastDecoder(model)`, and the
   model is left as it was: by default the engine keeps its own copy of the
   weights in this layout. A loader that wants one copy only builds the model
   on the layout instead (`share_layout`, before anyone holds the model: the
   pretrained loader does, and its cache keeps this layout).

`generate(model, ..., engine=FastDecoder(model))` takes every step through it
while the model's swap points (minitx.swaps) hold minitx's functions; with a
learner's function swapped in, it runs the model's own forward. A test holds
`FastDecoder.step` equal to `CausalLM.forward` with a cache, and their greedy
tokens the same.

Notation: D model size, H query heads, G key/value heads, Dh head size,
F feed-forward size, V vocabulary, S slabs (cores), N = (H + 2G) * Dh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .block import RMSNorm, embed_ids
from .attention import causal_mask
from .decoder import CausalLM, KVCache
from .positional import rope_angles
from .swaps import NAMES


# Each fused matrix of a layer, and the nn.Linear layers whose weights it holds side by side, in order.
GROUPS = {"qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"), "out": ("attention.out_proj",),
          "gate_up": ("feed_forward.gate", "feed_forward.up"), "down": ("feed_forward.down",)}


def layer_groups(layer: nn.Module) -> dict[str, list[tuple[str, nn.Linear]]]:
    """GROUPS with the layer's modules ("gate_up" is the up matrix alone in a feed-forward without a gate)."""
    def module(name):
        owner, attribute = name.split(".")
        return getattr(getattr(layer, owner), attribute)

    return {group: [(name, module(name)) for name in names if module(name) is not None]
            for group, names in GROUPS.items()}


def decode_layout(model: CausalLM) -> dict[str, torch.Tensor]:
    """Every weight of the model in the decode step's layout: per layer "qkv", "out", "gate_up" and
    "down" fused and transposed, (D_in, D_out) contiguous; "head" the embedding transposed, (D, V);
    everything else (norms, biases) under its own name. New tensors: the model is left as it is."""
    layout = {"head": model.embedding.weight.detach().t().contiguous()}                   # (D, V)
    fused = {"embedding.weight"}
    for index, layer in enumerate(model.layers):
        for group, members in layer_groups(layer).items():
            weights = [module.weight.detach() for _, module in members]                     # (D_out_i, D_in)
            matrix = weights[0].new_empty(weights[0].size(1), sum(w.size(0) for w in weights))   # (D_in, D_out)
            torch.cat([w.t() for w in weights], dim=1, out=matrix)
            layout[f"layers.{index}.{group}"] = matrix
            fused.update(f"layers.{index}.{name}.weight" for name, _ in members)
            if members[0][1].bias is not None:                                              # (sum of D_out_i,)
                layout[f"layers.{index}.{group}.bias"] = torch.cat([m.bias.detach() for _, m in members])
                fused.update(f"layers.{index}.{name}.bias" for name, _ in members)
    layout.update({name: tensor.detach() for name, tensor in model.state_dict().items() if name not in fused})
    return layout


def model_state(model: CausalLM, layout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict as views of the layout's tensors: no copy."""
    state = {"embedding.weight": layout["head"].t()}                                       # (V, D)
    for index, layer in enumerate(model.layers):
        for group, members in layer_groups(layer).items():
            fused, first = layout[f"layers.{index}.{group}"], 0                            # (D_in, D_out)
            bias = layout.get(f"layers.{index}.{group}.bias")
            for name, module in members:
                last = first + module.out_features
                state[f"layers.{index}.{name}.weight"] = fused[:, first:last].t()          # (D_out_i, D_in)
                if bias is not None:
                    state[f"layers.{index}.{name}.bias"] = bias[first:last]
                first = last
    names = model.state_dict().keys()
    state.update({name: tensor for name, tensor in layout.items() if name in names})
    return state


def slab_count(d_in: int, cores: int | None = None) -> int:
    """How many slabs a D_in-row matrix is cut into: one per core, as many as divide D_in evenly."""
    cores = max(1, cores or torch.get_num_threads())
    return next(s for s in range(min(cores, d_in), 0, -1) if d_in % s == 0)


def slabs(matrix: torch.Tensor, cores: int | None = None) -> torch.Tensor:
    """A (D_in, D_out) contiguous matrix cut along D_in into a slab per core: a view.  -> (S, D_in / S, D_out)"""
    d_in, d_out = matrix.shape
    count = slab_count(d_in, cores)
    return matrix.view(count, d_in // count, d_out)


def project(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """Rows times a matrix cut into slabs. One row: a slab per core, multiplied in parallel and the
    partial results added; several: one matrix product, which every core shares anyway.  (T, D_in) -> (T, D_out)"""
    count, part, d_out = packed.shape
    if x.size(0) > 1:
        return x @ packed.view(count * part, d_out)
    return torch.bmm(x.view(count, 1, part), packed).sum(0)              # (S, 1, D_out) -> (1, D_out)


class Slabs:
    """A float32 (D_in, D_out) matrix of the layout, cut into slabs: called on rows, it projects them.
    Anything else called the same way (minitx.quant's block matrices) can stand in for it."""

    def __init__(self, matrix: torch.Tensor, cores: int | None = None):
        self.slabs = slabs(matrix, cores)                                   # (S, D_in / S, D_out)
        self.in_features, self.out_features = matrix.shape
        self.nbytes = matrix.numel() * matrix.element_size()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return project(x, self.slabs)                                       # (T, D_in) -> (T, D_out)


def as_matrix(value, cores: int | None = None):
    """A layout entry as something to call on rows: a float32 tensor cut into Slabs, else as it is."""
    return Slabs(value, cores) if isinstance(value, torch.Tensor) else value


class PackedLayer:
    """One block's four fused matrices (Slabs, or block matrices), their biases (None without) and its activation."""

    def __init__(self, layer: nn.Module, index: int, layout: dict[str, torch.Tensor], cores: int | None):
        self.qkv, self.out, self.gate_up, self.down = (as_matrix(layout[f"layers.{index}.{group}"], cores)
                                                       for group in GROUPS)
        self.biases = [layout.get(f"layers.{index}.{group}.bias") for group in GROUPS]
        self.activation = layer.feed_forward.kind


def _norm(module: nn.Module):
    """The norm as one fused call (RMSNorm's formula is minitx.block.rms_norm; tested equal)."""
    if isinstance(module, RMSNorm):
        return lambda x: F.rms_norm(x, (x.size(-1),), module.weight, module.eps)
    return module


def supports(model: nn.Module) -> str | None:
    """None if FastDecoder can run this model, else why not, in a few words."""
    if not isinstance(model, CausalLM):
        return "it is not a CausalLM"
    cfg = model.cfg
    if cfg.norm_position != "pre":
        return "its blocks are post-norm"
    if cfg.ffn == "moe":
        return "its feed-forward is a mixture of experts"
    if next(model.parameters()).device.type not in ("cpu", "meta"):     # meta: weights still to come
        return "it is not on the CPU"
    return None


def share_layout(model: CausalLM, layout: dict[str, torch.Tensor]) -> None:
    """Build the model on `layout` (decode_layout of its own weights): its parameters become views of
    the layout's tensors, so one float32 copy serves the model and a FastDecoder given the same layout.
    For a loader, before anyone holds the model (its parameters are new objects afterwards)."""
    model.load_state_dict(model_state(model, layout), assign=True)


class FastDecoder:
    """The decode step (and a prompt's pass) of one sequence through a CausalLM, in the decode layout (see the
    module docstring). It reads the model's embedding and norms and never changes the model."""

    # minitx's functions it computes itself: a model with any of these swap points swapped runs its own forward
    COMPUTES = frozenset(NAMES) - {"top_p"}

    def __init__(self, model: CausalLM, layout: dict[str, torch.Tensor] | None = None, cores: int | None = None):
        """`layout`: decode_layout of the model's weights, the storage share_layout built the model on (or
        minitx.quant.stored.packed_layout, the blocks a StoredCausalLM runs on); by default a copy of the
        model's weights as they are now (build it once the model is done training)."""
        why = supports(model)
        if why is not None:
            raise ValueError(f"FastDecoder cannot run this model: {why}.")
        self.model, self.cfg = model, model.cfg
        self.layout = decode_layout(model) if layout is None else layout
        self.layers = [PackedLayer(layer, i, self.layout, cores) for i, layer in enumerate(model.layers)]
        self.head = as_matrix(self.layout["head"], cores)                                      # (1, D) -> (1, V)
        self.attention_norms = [_norm(layer.attention_norm) for layer in model.layers]
        self.ffn_norms = [_norm(layer.ffn_norm) for layer in model.layers]
        self.final_norm = _norm(model.final_norm)
        self._turns = None

    def runs(self, model: CausalLM) -> bool:
        """Whether a step of `model` can go through this engine: its own model, with minitx's functions."""
        if model is not self.model:
            raise ValueError("this FastDecoder was built for another model.")
        return not self.COMPUTES.intersection(model.swaps.replaced)

    def _rope(self, start: int, length: int) -> torch.Tensor:
        """The turn of positions start ... start + length - 1 as complex numbers cos + i sin.  -> (T, 1, Dh/2)"""
        end = start + length
        if self._turns is None or end > self._turns.size(0):
            size = min(self.cfg.max_len, max(2 * end, 256))
            cos, sin = rope_angles(size, self.cfg.head_dim, self.cfg.rope_base)             # (T, Dh/2)
            self._turns = torch.complex(cos, sin)[:, None]                                   # (T, 1, Dh/2)
        return self._turns[start:end]

    def _rotate(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """RoPE on every head at once, each pair (a, b) read as a + ib: times cos + i sin it becomes
        (a cos - b sin) + i (a sin + b cos), the rotation of minitx.positional.apply_rope (and of
        Meta's Llama code).  (T, heads, Dh) -> (T, heads, Dh)"""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))                     # (T, heads, Dh/2)
        return torch.view_as_real(pairs * self._rope(start, x.size(0))).flatten(-2).type_as(x)

    @torch.inference_mode()
    def step(self, ids: list[int], cache: KVCache, start: int) -> torch.Tensor:
        """The logits for the token after the last of `ids`, which sit at positions start, start + 1, ...;
        their keys and values are written into the cache, as CausalLM.forward(ids, cache, start) does.
        One id is a decode step; many are a prompt's pass (matrix products instead of vector ones).  -> (V,)"""
        cfg, model = self.cfg, self.model
        H, G, Dh, T = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, len(ids)
        x = embed_ids(torch.tensor([ids]), model.embedding, model.embed_scale, model.positional, cfg.max_len,
                      start)[0]                                                                # (T, D)
        for index, packed in enumerate(self.layers):
            # 1) attention: q, k and v from one product; RoPE on the q and k heads together
            qkv = _plus(packed.qkv(self.attention_norms[index](x)), packed.biases[0]).float()   # (T, N)
            qk, v = qkv[:, :(H + G) * Dh].view(T, H + G, Dh), qkv[:, (H + G) * Dh:].view(T, G, Dh)
            if cfg.pos_encoding == "rope":
                qk = self._rotate(qk, start)
            q = qk[:, :H].transpose(0, 1)[None]                                               # (1, H, T, Dh)
            k, v = qk[:, H:].transpose(0, 1)[None], v.transpose(0, 1)[None]                   # (1, G, T, Dh)
            keys, values = cache.layers[index].update(k, v, start)                            # (1, G, S, Dh)
            mask = None if T == 1 or start == 0 else causal_mask(T, start + T)               # a new token sees all
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=T > 1 and start == 0,
                                                 enable_gqa=H != G)                          # (1, H, T, Dh)
            x = x + _plus(packed.out(out[0].transpose(0, 1).reshape(T, H * Dh)), packed.biases[1])
            # 2) feed-forward: gate and up from one product
            hidden = _plus(packed.gate_up(self.ffn_norms[index](x)), packed.biases[2])
            if packed.activation == "swiglu":
                gate, up = hidden.chunk(2, dim=-1)
                hidden = F.silu(gate) * up
            else:
                hidden = F.relu(hidden) if packed.activation == "relu" else F.gelu(hidden)
            x = x + _plus(packed.down(hidden), packed.biases[3])
        return self.head(self.final_norm(x[-1:]))[0]                                 # (V,)


def _plus(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x if bias is None else x + bias
