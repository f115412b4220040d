r"""A CausalLM whose weights stay as they are stored: 4-bit block matrices and a Q8_0 embedding table.

It is minitx's CausalLM in every other way (the same blocks, norms, swap
points and hooks): only its linear layers and its embedding hold blocks
instead of float32 weights, and multiply by them through minitx.quant.kernels.
A layer's q, k and v matrices are one packed matrix, and so are gate and up,
as in minitx.fast_decode's layout: `stored_model` returns that layout too, and
`FastDecoder(model, layout)` runs the decode step on the very same blocks.

A matrix in a form the int4 kernel cannot run stays float32 (its group with
it); an embedding that is not Q8_0 stays float32. Either way the model runs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..block import make_positional
from ..decoder import CausalLM
from ..fast_decode import GROUPS, FastDecoder, Slabs, layer_groups, supports
from .blocks import BLOCK, Quantized, quantize
from .kernels import ACTIVATIONS, Int4Matrix, Q8Table, int4_unavailable

Weight = Quantized | torch.Tensor


def runs_in_int4(weight: Weight) -> bool:
    return isinstance(weight, Quantized) and weight.format.bits <= 4


def as_float(weight: Weight) -> torch.Tensor:
    return weight.dequantize() if isinstance(weight, Quantized) else weight.float()


def is_matrix(name: str) -> bool:
    """A layer's linear weight (not a norm's, not a bias)."""
    return name.startswith("layers.") and name.endswith(".weight") and "norm" not in name


def in_blocks(state: dict[str, Weight]) -> tuple[dict[str, Weight], list[str]]:
    """The weights as the int4 engine runs them: every layer matrix in 4-bit blocks (a matrix stored
    otherwise is quantized to Q4_1 here) and the embedding in Q8_0 (likewise); and what was done, in words."""
    state, quantized, kept = dict(state), {}, []
    for name, weight in state.items():
        wanted = "Q4_1" if is_matrix(name) else "Q8_0" if name == "embedding.weight" else None
        if wanted is None or runs_in_int4(weight) or (wanted == "Q8_0" and isinstance(weight, Quantized)
                                                        and weight.format.name == "Q8_0"):
            continue
        if weight.shape[-1] % BLOCK:
            kept.append(name)
            continue
        was = weight.format.name if isinstance(weight, Quantized) else "float"
        quantized.setdefault((was, wanted), []).append(name)
        state[name] = quantize(as_float(weight), wanted)
    notes = [f"{len(names)} {'matrix' if len(names) == 1 else 'matrices'} stored as {was} quantized to {wanted} "
             f"on load (e.g. {names[0]})" for (was, wanted), names in quantized.items()]
    if kept:
        notes.append(f"{len(kept)} matrices run in float32: their rows are not a multiple of {BLOCK} long "
                     f"(e.g. {kept[0]})")
    return state, notes


class BlockLinear(nn.Module):
    """nn.Linear's place in a stored model: rows first..last of a shared matrix (a layer's q, k and v
    are one), called on rows as minitx.fast_decode calls it."""

    def __init__(self, matrix, first: int, last: int, bias: torch.Tensor | None = None):
        super().__init__()
        self.matrix, self.first, self.last, self.bias = matrix, first, last, bias
        self.out_features = last - first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D_in) -> (..., D_out)"""
        y = self.matrix(x.reshape(-1, x.size(-1)))[:, self.first:self.last].to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class BlockEmbedding(nn.Module):
    """The embedding table in Q8_0 blocks: a lookup dequantizes only the rows it reads (exactly)."""

    def __init__(self, table: Q8Table):
        super().__init__()
        self.table = table
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(...) -> (..., D)"""
        return self.table.rows(ids.reshape(-1)).view(*ids.shape, self.embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        """The whole table in float32, for a page that draws it (a new V x D tensor each time).  -> (V, D)"""
        return self.table.quantized.dequantize()


class StoredCausalLM(CausalLM):
    """A CausalLM built by `stored_model`: its head multiplies by the embedding's blocks as stored."""

    head_matrix = None              # called on rows: (n, D) -> (n, V)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V)"""
        return self.head_matrix(x.reshape(-1, x.size(-1))).reshape(*x.shape[:-1], -1)


def weight_count(model: nn.Module) -> int:
    """How many weights a model has, whatever form they are kept in (parameters, or blocks)."""
    count = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, BlockLinear):
            count += module.out_features * module.matrix.in_features
        elif isinstance(module, BlockEmbedding):
            count += module.num_embeddings * module.embedding_dim
    return count


def packed_layout(state: dict[str, Weight], cfg: ModelConfig, activations: torch.dtype = ACTIVATIONS
                  ) -> tuple[dict, list[str]]:
    """These weights (minitx's names; 4-bit blocks, Q8_0 blocks or float) in minitx.fast_decode's layout:
    per layer the four fused matrices ("qkv", "out", "gate_up", "down": Int4Matrix where every member
    runs in int4, else float32 Slabs) and their biases, "head" (Q8Table, or Slabs), the rest (norms) as
    they are; and the names of the matrices that run in float32. activations: what the kernels multiply
    in (float32: exact scales, and the kernels' slow path)."""
    state, layout, in_float = dict(state), {}, []
    for index in range(cfg.n_layers):
        for group, members in GROUPS.items():
            names = [f"layers.{index}.{name}" for name in members if f"layers.{index}.{name}.weight" in state]
            weights = [state.pop(f"{name}.weight") for name in names]
            biases = [state.pop(f"{name}.bias", None) for name in names]
            if all(runs_in_int4(w) for w in weights):
                layout[f"layers.{index}.{group}"] = Int4Matrix(weights, activations)
            else:
                in_float += [name for name, w in zip(names, weights) if not runs_in_int4(w)]
                fused = torch.cat([as_float(w).t() for w in weights], dim=1).contiguous()      # (D_in, D_out)
                layout[f"layers.{index}.{group}"] = Slabs(fused)
            if biases[0] is not None:
                layout[f"layers.{index}.{group}.bias"] = torch.cat(biases)                       # (D_out,)
    table = state.pop("embedding.weight")
    if isinstance(table, Quantized) and table.format.name == "Q8_0":
        layout["head"] = Q8Table(table, activations)
    else:
        in_float.append("embedding")
        layout["head"] = Slabs(as_float(table).t().contiguous())                                # (D, V)
    layout.update({name: as_float(w) for name, w in state.items()})
    return layout, in_float


def assemble(layout: dict, cfg: ModelConfig) -> StoredCausalLM:
    """The model of this shape on a packed layout: each linear layer a BlockLinear over its rows of the
    layout's fused matrix, the embedding the layout's head; nothing is copied."""
    with torch.device("meta"):
        model = StoredCausalLM(cfg).eval()
    for index, layer in enumerate(model.layers):
        for group, members in layer_groups(layer).items():
            matrix, bias = layout[f"layers.{index}.{group}"], layout.get(f"layers.{index}.{group}.bias")
            first = 0
            for name, module in members:
                owner, attribute = name.split(".")
                last = first + module.out_features
                part = None if bias is None else bias[first:last]
                setattr(getattr(layer, owner), attribute, BlockLinear(matrix, first, last, part))
                first = last
    head = layout["head"]
    if isinstance(head, Q8Table):
        model.embedding = BlockEmbedding(head)
    else:
        model.embedding = nn.Embedding.from_pretrained(head.slabs.view(cfg.d_model, -1).t(), freeze=True)
    model.head_matrix = head
    if model.positional is not None:               # a sinusoidal table is a buffer, made here, not loaded
        model.positional = make_positional(cfg, model.swaps)
    names = {name for name, _ in model.named_parameters()}
    model.load_state_dict({name: t for name, t in layout.items() if name in names}, strict=False, assign=True)
    left = [name for name, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if left:
        raise ValueError(f"the checkpoint has no weights for {', '.join(left[:3])}: it is not a model of this shape.")
    return model


def stored_model(state: dict[str, Weight], cfg: ModelConfig, activations: torch.dtype = ACTIVATIONS
                 ) -> tuple[StoredCausalLM, dict, list[str]]:
    """The model on these weights, its packed layout (for FastDecoder) and the matrices that run in float32."""
    layout, in_float = packed_layout(state, cfg, activations)
    return assemble(layout, cfg), layout, in_float


# A packed layout as plain tensors, for minitx's cache: an entry's kind is the last part of its name.
def layout_tensors(layout: dict) -> dict[str, torch.Tensor]:
    """The layout as named tensors (packed codes, scales, float matrices, norms), for safetensors."""
    tensors = {}
    for name, value in layout.items():
        if isinstance(value, Int4Matrix):
            tensors[f"{name}.int4_packed"], tensors[f"{name}.int4_scales_and_zeros"] = value.packed, value.scales_and_zeros
        elif isinstance(value, Q8Table):
            tensors[f"{name}.q8_codes"], tensors[f"{name}.q8_scale"] = value.codes, value.scale
            for half in ("high", "low"):
                matrix = getattr(value, half)
                tensors[f"{name}.q8_{half}_packed"], tensors[f"{name}.q8_{half}_scales"] = matrix.packed, matrix.scales_and_zeros
        elif isinstance(value, Slabs):
            tensors[f"{name}.float"] = value.slabs.view(value.in_features, value.out_features)
        else:
            tensors[name] = value
    return tensors


def layout_from_tensors(tensors: dict[str, torch.Tensor]) -> dict:
    """layout_tensors, undone. Every tensor is copied out of the mapped file: to an address the kernels
    can read whole cache lines from (safetensors' may not be, and a kernel may crash on one), and so
    that the file's mapping, with every page the copy read, can go."""
    kept = {name: tensor.clone() for name, tensor in tensors.items()}
    layout = {}
    for name, tensor in kept.items():
        base, _, kind = name.rpartition(".")
        if kind == "int4_packed":
            layout[base] = Int4Matrix.from_packed(tensor, kept[f"{base}.int4_scales_and_zeros"])
        elif kind == "q8_codes":
            high, low = (Int4Matrix.from_packed(kept[f"{base}.q8_{half}_packed"], kept[f"{base}.q8_{half}_scales"])
                         for half in ("high", "low"))
            layout[base] = Q8Table.from_parts(tensor, kept[f"{base}.q8_scale"], high, low)
        elif kind == "float":
            layout[base] = Slabs(tensor)
        elif not kind.startswith(("int4_", "q8_")):
            layout[name] = tensor
    return layout


def in_blocks_of(model: CausalLM) -> tuple[CausalLM, FastDecoder, tuple[str, ...]]:
    """A model trained here as the int4 engine runs it: its matrices quantized to Q4_1 and its embedding to
    Q8_0 (a new model; this one is left as it is), with its decode engine and what was done, in words.
    Where this machine has no int4 kernel, the model itself in float32, and a note that says so."""
    why = supports(model)
    if why is not None:
        raise ValueError(f"the 4-bit engine cannot run this model: {why}.")
    if (missing := int4_unavailable()) is not None:
        return model, FastDecoder(model), (f"{missing}: the weights run in float32 instead",)
    state, notes = in_blocks({name: tensor.detach() for name, tensor in model.state_dict().items()})
    stored, layout, _ = stored_model(state, model.cfg)
    return stored, FastDecoder(stored, layout), tuple(notes)
