r"""What quantizing a model does, measured on it: each format's weight error, quality, size and speed.

For every block format (minitx.quant.blocks) the model's layer matrices are
quantized and run two ways:

- for quality, dequantized again into a float32 copy (`quantized_copy`): the
  numbers the format keeps, so any loss is the format's, not a kernel's;
- for speed and memory, as the 4-bit engine runs them (`engine_for`): packed
  blocks through the int4 kernel (Q4_0, Q4_1, and Q3_1 / Q2_1 in 4-bit slots),
  or float32 where no kernel here runs the format (Q8_0 matrices).

The embedding (also the output head) stays as it is in the quality copy, so
the comparison is about the layer matrices; in the engine it is Q8_0.

A decode step reads every weight once, so its time is bounded below by bytes
read / memory bandwidth: `bytes_per_token` and `read_bandwidth` give that bound.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..decoder import CausalLM
from ..fast_decode import FastDecoder, supports
from .blocks import BLOCK, BY_GGUF_TYPE, FORMATS, Quantized, from_gguf, quantize
from .stored import is_matrix, stored_model

SHOWN = ("Q8_0", "Q4_1", "Q4_0", "Q3_1", "Q2_1")
FLOAT_BITS = {"F32": 32, "BF16": 16}


def layer_matrices(model: CausalLM) -> dict[str, torch.Tensor]:
    """The layer matrices of a float model, by minitx's names: what a block format quantizes."""
    return {name: t.detach() for name, t in model.state_dict().items() if is_matrix(name)}


def quantized_matrices(model: CausalLM, format: str) -> dict[str, Quantized]:
    """The model's layer matrices in `format` (those whose rows are made of whole blocks)."""
    return {name: quantize(weight, format) for name, weight in layer_matrices(model).items()
            if weight.shape[-1] % BLOCK == 0}


def quantized_copy(model: CausalLM, format: str, matrices: dict[str, Quantized] | None = None) -> CausalLM:
    """A float32 model whose layer matrices are what `format` keeps of this one's (quantized, then
    dequantized; `matrices`: quantized_matrices, if made already); everything else is shared, not copied."""
    matrices = quantized_matrices(model, format) if matrices is None else matrices
    return with_matrices(model, {name: q.dequantize() for name, q in matrices.items()})


def with_matrices(model: CausalLM, replaced: dict[str, torch.Tensor]) -> CausalLM:
    """A float32 model with some matrices replaced (by what a quantizer kept of them); the rest is shared."""
    state = dict(model.state_dict())
    state.update({name: weight.reshape(state[name].shape).float() for name, weight in replaced.items()})
    with torch.device("meta"):
        copy = CausalLM(model.cfg)
    copy.load_state_dict(state, assign=True)
    return copy.eval()


def model_bytes(model: CausalLM, format: str) -> int:
    """The model's size with its layer matrices and embedding in `format` (or F32, BF16), the rest in float32."""
    total = 0
    for name, tensor in model.state_dict().items():
        if (is_matrix(name) or name == "embedding.weight") and tensor.shape[-1] % BLOCK == 0:
            bits = FLOAT_BITS.get(format) or FORMATS[format].bits_per_weight
            total += math.ceil(tensor.numel() * bits / 8)
        else:
            total += tensor.numel() * 4
    return total


def engine_for(model: CausalLM, format: str, matrices: dict[str, Quantized] | None = None
               ) -> tuple[CausalLM, FastDecoder | None, str]:
    """The model with its layer matrices in `format` as the engine runs them (`matrices`: quantized_matrices,
    if made already), its engine, and how it runs ("int4 kernel" or "float32 products"). A model the
    engine cannot run (a mixture of experts, post-norm) runs its own forward on the dequantized matrices."""
    if (why := supports(model)) is not None:
        return quantized_copy(model, format, matrices), None, f"float32, its own forward ({why})"
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    state.update(quantized_matrices(model, format) if matrices is None else matrices)
    if state["embedding.weight"].shape[-1] % BLOCK == 0:         # the embedding in Q8_0, as 4-bit files keep it
        state["embedding.weight"] = quantize(state["embedding.weight"], "Q8_0")
    stored, layout, in_float = stored_model(state, model.cfg)
    runs = "int4 kernel" if not any(name.startswith("layers.") for name in in_float) else "float32 products"
    return stored, FastDecoder(stored, layout), runs


def bytes_per_token(engine: FastDecoder | None, model: CausalLM) -> int:
    """Bytes a decode step reads: every matrix of the engine's layout once, the head included (norms are
    tiny); without an engine, every float32 weight of the model."""
    if engine is None:
        return sum(p.numel() * p.element_size() for p in model.parameters())
    matrices = [m for layer in engine.layers for m in (layer.qkv, layer.out, layer.gate_up, layer.down)]
    return sum(m.nbytes for m in matrices) + engine.head.nbytes


def read_bandwidth(megabytes: int = 256, repeats: int = 3) -> float:
    """GB/s summing a tensor much larger than the caches, the best of a few: memory read at full speed."""
    big = torch.ones(megabytes * 2**20 // 4)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        big.sum()
        best = max(best, big.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return best


@torch.inference_mode()
def text_loss(model: CausalLM, texts: list[list[int]]) -> tuple[float, int]:
    """Total next-token loss (nats) over the texts, and how many predictions it counts."""
    total, count = 0.0, 0
    for ids in texts:
        if len(ids) < 2:
            continue
        logits = model(torch.tensor([ids])).logits[0, :-1].float()                       # (T - 1, V)
        total += torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
        count += len(ids) - 1
    return total, count


@functools.lru_cache(maxsize=1)
def _file(path: str):
    """The file's reader, kept: parsing its index takes about a second; its tensors are read when used."""
    import gguf

    return gguf.GGUFReader(path)


def stored_tensor(path: str | Path, name: str) -> Quantized | torch.Tensor:
    """One tensor of a GGUF file as the file keeps it: in its blocks if it is Q8_0, Q4_0 or Q4_1, else float32."""
    import gguf

    for tensor in _file(str(path)).tensors:
        if tensor.name == name:
            shape = tuple(reversed(tensor.shape.tolist()))
            if int(tensor.tensor_type) in BY_GGUF_TYPE and len(shape) == 2:
                return from_gguf(tensor.data, int(tensor.tensor_type), shape, f"{Path(path).name}'s {name}")
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
            return torch.from_numpy(np.require(values, np.float32, "W"))
    raise ValueError(f"{Path(path).name} has no tensor {name!r}.")


def tensor_types(path: str | Path) -> dict[str, str]:
    """Every tensor of a GGUF file and the type it is stored in ('Q4_1', 'F32', ...)."""
    return {t.name: t.tensor_type.name for t in _file(str(path)).tensors}


def block_rows(q: Quantized, row: int = 0, blocks: int = 2) -> list[dict]:
    """The first blocks of one row as stored: scale d, minimum m (formats with one), the codes and the
    values they stand for."""
    rows = []
    for b in range(min(blocks, q.shape[1] // BLOCK)):
        codes = q.codes[row, b * BLOCK:(b + 1) * BLOCK]
        d = float(q.scale[row, b])
        m = float(q.minimum[row, b]) if q.minimum is not None else None
        values = (codes.float() - q.format.offset) * d + (m or 0.0)
        rows.append({"block": b, "d": d, "m": m, "codes": codes.tolist(), "values": values.tolist()})
    return rows
