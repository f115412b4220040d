"""A GGUF file (llama.cpp's format) read into minitx: shape, float32 weights, tokenizer, chat template.

GGUF keeps a whole model in one file: key/value metadata (`llama.block_count`,
`tokenizer.ggml.tokens`, `tokenizer.chat_template`, ...) and the tensors, often
quantized. Q4_1, for instance, stores each block of 32 weights as 4-bit
integers with a scale and a minimum: w = scale x q + minimum. `gguf`, ggml's
own reader, dequantizes them back to float32, the very numbers llama.cpp
computes with. A GGUF file's query/key rows are already in minitx's RoPE order
(see minitx.pretrained.convert).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as BackendTokenizer

from ..quant.blocks import BY_GGUF_TYPE, from_gguf
from ..tokenizer import Tokenizer
from .checkpoint import GGUF_EMBEDDING_SCALE, PretrainedCheckpoint, checked_llama_config, context_length
from .convert import to_minitx

CONTROL = 3                   # tokenizer.ggml.token_type of a special token such as <|im_end|>
FLOAT_TYPES = ("F32", "F16", "BF16", "F64")
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>")

# How text is cut into words before byte-level BPE merges within them, by tokenizer.ggml.pre
# (llama.cpp's names). GPT-2's rule keeps a word with the space before it (" the").
GPT2_WORDS = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
PRE_TOKENIZERS = {
    "gpt-2": lambda: GPT2_WORDS,
    "default": lambda: GPT2_WORDS,
    # SmolLM's: every digit alone first ("2024" is 2, 0, 2, 4), then GPT-2's rule
    "smollm": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), GPT2_WORDS]),
}


def _reader(path: Path):
    """gguf's GGUFReader on a plain array over the mapped file: it slices the file some 250,000
    times, and a numpy memmap pays for each slice (2.7 s against 1.0 s for SmolLM2's file)."""
    import gguf

    class Reader(gguf.GGUFReader):
        @property
        def data(self):
            return self._data

        @data.setter
        def data(self, mapped):
            self._data = mapped.view(np.ndarray)     # the same bytes, without memmap's bookkeeping

    return Reader(path)


class GGUFMetadata:
    """The file's key/value pairs, with errors that name the file and the key."""

    def __init__(self, reader, path: Path):
        self.reader, self.path = reader, path
        self.architecture = self.get("general.architecture")

    def get(self, key: str, default=...):
        field = self.reader.fields.get(key)
        if field is None:
            if default is ...:
                raise ValueError(f"{self.path.name} has no {key!r} entry: it is not a GGUF file minitx can read.")
            return default
        return field.contents()

    def model(self, key: str, default=...):
        """An architecture's entry: 'block_count' is 'llama.block_count' in a Llama file."""
        return self.get(f"{self.architecture}.{key}", default)


def _tokenizer(meta: GGUFMetadata) -> Tokenizer:
    """The file's byte-level BPE (tokenizer.ggml.model 'gpt2'), built with HF tokenizers."""
    kind, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "default")
    if kind != "gpt2":
        raise ValueError(f"{meta.path.name} has a {kind!r} tokenizer; minitx reads byte-level BPE ('gpt2') only.")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{meta.path.name} splits words the {pre!r} way, which minitx does not know "
                         f"(it knows {', '.join(PRE_TOKENIZERS)}).")
    tokens, types = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.token_type")
    merges = [tuple(merge.split(" ", 1)) for merge in meta.get("tokenizer.ggml.merges")]
    backend = BackendTokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    backend.pre_tokenizer = PRE_TOKENIZERS[pre]()
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                for token, kind in zip(tokens, types) if kind == CONTROL])
    specials = {"eos": tokens[meta.get("tokenizer.ggml.eos_token_id")]}
    for role, key in (("pad", "padding_token_id"), ("unk", "unknown_token_id")):
        index = meta.get(f"tokenizer.ggml.{key}", None)
        if index is not None:
            specials[role] = tokens[index]
    end = next((token for token in END_OF_TEXT if token in tokens and token != specials["eos"]), None)
    if end is not None:
        specials["end_of_text"] = end
    bos = meta.get("tokenizer.ggml.bos_token_id", None)
    start = (tokens[bos],) if bos is not None and meta.get("tokenizer.ggml.add_bos_token", False) else ()
    return Tokenizer(backend, specials, start)


def read_gguf(path: str | Path, keep_blocks: bool = False) -> PretrainedCheckpoint:
    """Everything minitx needs from a GGUF file of a Llama-family model, weights in float32; with
    keep_blocks, a matrix stored as Q8_0, Q4_0 or Q4_1 stays in its blocks (minitx.quant.blocks.Quantized).
    A file that is not GGUF, is cut short or holds another kind of model raises ValueError
    naming it."""
    from gguf.quants import dequantize

    path = Path(path)
    try:
        reader = _reader(path)
    except (OSError, ValueError, IndexError, KeyError) as error:
        raise ValueError(f"{path} is not a readable GGUF file ({error}); download it again.") from None
    meta = GGUFMetadata(reader, path)
    if meta.architecture != "llama":
        raise ValueError(f"{path.name} holds a {meta.architecture!r} model; minitx runs Llama-family models only.")
    tokenizer = _tokenizer(meta)
    n_heads, d_model = meta.model("attention.head_count"), meta.model("embedding_length")
    cfg = checked_llama_config(
        path.name, head_dim=meta.model("rope.dimension_count", d_model // n_heads),
        vocab_size=meta.model("vocab_size", tokenizer.vocab_size), d_model=d_model, n_heads=n_heads,
        n_kv_heads=meta.model("attention.head_count_kv", n_heads), n_layers=meta.model("block_count"),
        d_ff=meta.model("feed_forward_length"), max_len=context_length(meta.model("context_length")),
        rms_norm_eps=meta.model("attention.layer_norm_rms_epsilon"),
        rope_base=meta.model("rope.freq_base", 10_000.0), pad_id=tokenizer.pad_id or 0,
        bias=any(t.name == "blk.0.attn_q.bias" for t in reader.tensors),
        scale_embeddings=meta.get(GGUF_EMBEDDING_SCALE, None) is not None,
        embedding_scale=meta.get(GGUF_EMBEDDING_SCALE, None))
    tensors, expanded = {}, {}
    for t in reader.tensors:                  # GGUF lists a shape innermost first: (D_in, D_out) -> (D_out, D_in)
        shape = tuple(reversed(t.shape.tolist()))
        if keep_blocks and int(t.tensor_type) in BY_GGUF_TYPE and len(shape) == 2:
            tensors[t.name] = from_gguf(t.data, int(t.tensor_type), shape, f"{path.name}'s {t.name}")
            continue
        if keep_blocks and t.tensor_type.name not in FLOAT_TYPES:
            expanded.setdefault(t.tensor_type.name, []).append(t.name)
        values = dequantize(t.data, t.tensor_type).reshape(shape)
        tensors[t.name] = torch.from_numpy(np.require(values, np.float32, "W"))   # a float32 one is copied out of the file
    name = meta.get("general.name", path.stem)
    notes = tuple(f"{len(names)} tensors stored as {kind} were dequantized to float32 (minitx keeps Q8_0, Q4_0 "
                  f"and Q4_1 in their blocks; e.g. {names[0]})" for kind, names in expanded.items())
    return PretrainedCheckpoint(name, cfg, to_minitx(tensors, cfg, "gguf"), tokenizer,
                                meta.get("tokenizer.chat_template", None), notes)
