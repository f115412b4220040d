"""A Hugging Face model folder: what `LlamaForCausalLM.save_pretrained` writes, from a minitx model.

    config.json              the shape, in transformers' names (LlamaConfig)
    model.safetensors        the weights, Hugging Face's names and RoPE row order
    tokenizer.json           the run's byte-level BPE, as HF tokenizers saves it
    tokenizer_config.json    which tokens are special, and what reads the file (PreTrainedTokenizerFast)
    generation_config.json   the end-of-text token generation stops at

transformers loads it with AutoModelForCausalLM.from_pretrained(FOLDER) and AutoTokenizer, no extra code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from ..decoder import CausalLM
from ..pretrained.checkpoint import EMBEDDING_SCALE
from ..tokenizer import Tokenizer
from .tensors import llama_tensors


def start_id(tokenizer: Tokenizer) -> int | None:
    """The token a text starts with (minitx's language models: the end-of-text token), for bos_token_id."""
    return tokenizer.start_ids[0] if tokenizer.start_ids else tokenizer.eos_id


def llama_config_json(model: CausalLM, tokenizer: Tokenizer, name: str) -> dict:
    cfg = model.cfg
    bos = start_id(tokenizer)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name_or_path": name,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_base, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "hidden_act": "silu", "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": 0.0,
        "tie_word_embeddings": not cfg.scale_embeddings, "bos_token_id": bos, "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id, "torch_dtype": "float32", "dtype": "float32", "initializer_range": 0.02,
        "use_cache": True,
    }
    if cfg.scale_embeddings:           # the input table is stored scaled; minitx reads the scale back from here
        config[EMBEDDING_SCALE] = model.embed_scale
    return config


def tokenizer_config_json(tokenizer: Tokenizer, max_len: int) -> dict:
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
                "clean_up_tokenization_spaces": False, "add_bos_token": bool(tokenizer.start_ids), "add_eos_token": False}
    for role, key in (("eos", "eos_token"), ("pad", "pad_token"), ("unk", "unk_token")):
        if role in tokenizer.specials:
            settings[key] = tokenizer.specials[role]
    if tokenizer.start_ids:
        settings["bos_token"] = tokenizer.id_to_token(tokenizer.start_ids[0])
    return settings


def write_hf_folder(model: CausalLM, tokenizer: Tokenizer, folder: str | Path, name: str) -> None:
    """The model and its tokenizer as a Hugging Face folder (the folder exists and is empty)."""
    folder = Path(folder)
    save_file(llama_tensors(model, "hf"), str(folder / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(folder / "model.safetensors", 0o644)         # safetensors writes it private
    (folder / "config.json").write_text(json.dumps(llama_config_json(model, tokenizer, name), indent=2) + "\n")
    tokenizer.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config_json(tokenizer, model.cfg.max_len), indent=2) + "\n")
    generation = {"bos_token_id": start_id(tokenizer),
                  "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id, "do_sample": False}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
