"""A folder in the Hugging Face layout read into minitx: config.json, *.safetensors, tokenizer.json.

This is what `huggingface_hub.snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")`
leaves on disk, and what `save_pretrained` writes. The weights are read with
safetensors (tensors only, no code), turned to float32, and each query/key head's
rows reordered for minitx's RoPE (minitx.pretrained.convert).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from tokenizers import Tokenizer as BackendTokenizer

from ..tokenizer import Tokenizer
from .checkpoint import EMBEDDING_SCALE, PretrainedCheckpoint, checked_llama_config, context_length
from .convert import to_minitx

HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json",
             "tokenizer_config.json", "chat_template.jinja"]   # what minitx reads; the Hub download asks for these only
LLAMA_TYPES = ("llama", "mistral")     # the same block; Mistral's sliding window only matters past 4,096 tokens
SPECIAL_ROLES = {"eos_token": "eos", "pad_token": "pad", "unk_token": "unk"}


def _json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path.name} is missing from {path.parent}: a model folder needs config.json, "
                         f"model.safetensors and tokenizer.json.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is unreadable ({error}); download the model again.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object; download the model again.")
    return data


def _token_text(value) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _config(folder: Path, pad_id: int):
    raw = _json(folder / "config.json")
    where = f"config.json in {folder}"
    if raw.get("model_type") not in LLAMA_TYPES:
        raise ValueError(f"{where} describes a {raw.get('model_type')!r} model; minitx runs Llama-family models only.")
    bias = bool(raw.get("attention_bias"))
    if raw.get("hidden_act", "silu") != "silu" or bias != bool(raw.get("mlp_bias")):
        raise ValueError(f"{where} asks for an activation other than SiLU, or biases on some layers only, which "
                         f"minitx's Llama block lacks.")
    scale = raw.get(EMBEDDING_SCALE)
    if not raw.get("tie_word_embeddings", True) and scale is None:
        raise ValueError(f"{where} has an output head of its own; minitx's CausalLM ties it to the embedding table.")
    rope = raw.get("rope_parameters") or {}          # transformers 5 keeps rope_theta here
    if (raw.get("rope_scaling") or {}).get("rope_type", "default") != "default" \
            or rope.get("rope_type", "default") != "default":
        raise ValueError(f"{where} stretches RoPE for long contexts, which minitx's RoPE does not do.")
    n_heads = raw["num_attention_heads"]
    return checked_llama_config(
        where, head_dim=raw.get("head_dim"), vocab_size=raw["vocab_size"], d_model=raw["hidden_size"],
        n_heads=n_heads, n_kv_heads=raw.get("num_key_value_heads", n_heads), n_layers=raw["num_hidden_layers"],
        d_ff=raw["intermediate_size"], max_len=context_length(raw.get("max_position_embeddings", 2048)),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6), rope_base=rope.get("rope_theta", raw.get("rope_theta", 10_000.0)),
        pad_id=pad_id, bias=bias, scale_embeddings=scale is not None, embedding_scale=scale)


def _tokenizer(folder: Path) -> tuple[Tokenizer, str | None]:
    """The tokenizer, with its special tokens by role, and the chat template if the folder has one."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"tokenizer.json is missing from {folder}: a model folder needs config.json, "
                         f"model.safetensors and tokenizer.json.")
    try:
        backend = BackendTokenizer.from_file(str(path))
    except Exception as error:          # the Rust side raises its own exception type
        raise ValueError(f"{path} is not a tokenizer file ({error}); download the model again.") from None
    settings = _json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    specials = {role: _token_text(settings[key]) for key, role in SPECIAL_ROLES.items() if settings.get(key)}
    if "<|endoftext|>" in backend.get_vocab() and specials.get("eos") != "<|endoftext|>":
        specials["end_of_text"] = "<|endoftext|>"
    bos = _token_text(settings.get("bos_token"))
    start = (bos,) if bos and settings.get("add_bos_token") else ()
    template = settings.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    try:
        return Tokenizer(backend, specials, start), template
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _tensors(folder: Path) -> dict:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"model.safetensors is missing from {folder}: a model folder needs config.json, "
                         f"model.safetensors and tokenizer.json.")
    tensors = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except Exception as error:      # safetensors raises its own error for a cut-short file
            raise ValueError(f"{file} is not a readable safetensors file ({error}); download it again.") from None
    return tensors


def read_hf_folder(folder: str | Path) -> PretrainedCheckpoint:
    """Everything minitx needs from a Hugging Face model folder, weights in float32 and in minitx's
    order. A missing or damaged file raises ValueError naming it."""
    folder = Path(folder)
    tokenizer, template = _tokenizer(folder)
    cfg = _config(folder, tokenizer.pad_id or 0)
    name = _json(folder / "config.json").get("_name_or_path") or folder.name
    return PretrainedCheckpoint(str(name), cfg, to_minitx(_tensors(folder), cfg, "hf"), tokenizer, template)
