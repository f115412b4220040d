"""A GGUF file of the `llama` architecture, from a minitx model: what llama.cpp loads.

The metadata is the shape under llama.cpp's keys (`llama.block_count`, `llama.rope.freq_base`, ...), the
tokenizer as GGUF spells a byte-level BPE (`tokenizer.ggml.model` "gpt2": its tokens, merges and token
types, the special ids) and the weights. The tokenizer's pre-tokenizer is "gpt-2": llama.cpp then
splits words with GPT-2's pattern, the one minitx's byte-level BPE (HF tokenizers' ByteLevel with
use_regex) applies, so both cut a text into the same pieces. A GGUF file's query/key rows are in
minitx's RoPE order already (minitx.pretrained.convert). Matrices are written in the chosen type
through minitx's block quantizers (Q8_0, Q4_0, Q4_1: byte for byte what `gguf.quants` writes) or as
float32 / bfloat16; norms and biases stay float32, as llama.cpp's converter keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..decoder import CausalLM
from ..pretrained.checkpoint import GGUF_EMBEDDING_SCALE
from ..quant.blocks import BLOCK, quantize, to_gguf
from ..tokenizer import Tokenizer
from .tensors import llama_tensors

BLOCK_TYPES = {"q8_0": "Q8_0", "q4_1": "Q4_1", "q4_0": "Q4_0"}
FILE_TYPES = {"f32": 0, "bf16": 32, "q8_0": 7, "q4_1": 3, "q4_0": 2}    # llama.cpp's LLAMA_FTYPE_ numbers
NORMAL, CONTROL = 1, 3                 # tokenizer.ggml.token_type values


def tokenizer_metadata(tokenizer: Tokenizer) -> dict:
    """The byte-level BPE as GGUF's tokenizer.ggml.* entries: tokens by id, merges "a b", token types."""
    model = json.loads(tokenizer.backend.to_str())["model"]
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    specials = {token for token in tokenizer.specials.values()} | {
        added.content for added in tokenizer.backend.get_added_tokens_decoder().values() if added.special}
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model["merges"]]
    return {"tokens": tokens, "merges": merges, "types": [CONTROL if t in specials else NORMAL for t in tokens]}


def gguf_tensor(tensor: torch.Tensor, kind: str) -> tuple[np.ndarray, object, str]:
    """(the data as written, its GGML type, the type's name). Matrices take the chosen type; a matrix whose
    rows are not whole blocks of 32, every norm and bias stay float32."""
    from gguf import GGMLQuantizationType

    if tensor.dim() == 2 and kind in BLOCK_TYPES and tensor.size(1) % BLOCK == 0:
        blocks = quantize(tensor, BLOCK_TYPES[kind])
        return to_gguf(blocks), GGMLQuantizationType(blocks.format.gguf_type), BLOCK_TYPES[kind]
    if tensor.dim() == 2 and kind == "bf16":             # the bfloat16 values' bytes, two a weight
        return tensor.bfloat16().view(torch.uint8).numpy(), GGMLQuantizationType.BF16, "BF16"
    return tensor.float().numpy(), GGMLQuantizationType.F32, "F32"


def write_gguf(model: CausalLM, tokenizer: Tokenizer, path: str | Path, name: str, kind: str = "f32") -> dict:
    """The model and its tokenizer as one GGUF file; the matrices in `kind` (GGUF_TYPES). Returns how many
    tensors went into each type."""
    import gguf

    cfg = model.cfg
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_len)
    writer.add_embedding_length(cfg.d_model)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.d_ff)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_base)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(FILE_TYPES[kind])
    if cfg.scale_embeddings:            # minitx reads the scale back; llama.cpp needs none (the table is scaled)
        writer.add_float32(GGUF_EMBEDDING_SCALE, model.embed_scale)
    vocabulary = tokenizer_metadata(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocabulary["tokens"])
    writer.add_token_merges(vocabulary["merges"])
    writer.add_token_types(vocabulary["types"])
    writer.add_eos_token_id(tokenizer.eos_id)
    if tokenizer.start_ids:              # minitx's language models read a text after the end-of-text token
        writer.add_bos_token_id(tokenizer.start_ids[0])
        writer.add_add_bos_token(True)
    else:
        writer.add_add_bos_token(False)
    for role, setter in (("pad", writer.add_pad_token_id), ("unk", writer.add_unk_token_id)):
        if tokenizer.token_to_id(tokenizer.specials.get(role, "")) is not None:
            setter(tokenizer.token_to_id(tokenizer.specials[role]))
    counts: dict[str, int] = {}
    for tensor_name, tensor in llama_tensors(model, "gguf").items():
        data, ggml_type, type_name = gguf_tensor(tensor, kind)
        writer.add_tensor(tensor_name, data, raw_dtype=ggml_type)
        counts[type_name] = counts.get(type_name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts
