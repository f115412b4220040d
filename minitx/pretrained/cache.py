"""A GGUF file's float32 weights, tokenizer and settings kept on disk, so later loads skip the dequantizing.

Reading and dequantizing the file takes seconds; loading float32 safetensors
takes a fraction of one. The folder is named by the file's SHA-256, so another
file (or a changed one) never meets weights that are not its own, and it is
written whole or not at all, as a run folder is.

    ~/.cache/minitx/pretrained/<sha256 of the file, first 24 hex digits>/
        model.safetensors   the weights, float32, in minitx.fast_decode's decode layout (not a
                            state dict): the loader builds the model on it, so loading copies nothing
        tokenizer.json      the tokenizer (HF tokenizers' format)
        settings.json       the ModelConfig, the special tokens, the chat template, the name

The 4-bit weights (dtype "q4") are kept beside, in a folder named also by the
CPU's instruction set and PyTorch's version (`<hash>-q4-AVX512-2.13.0`): the
int4 kernel's packed layout depends on both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as BackendTokenizer

from ..config import ModelConfig
from ..tokenizer import Tokenizer, cache_dir
from .checkpoint import PretrainedCheckpoint

FORMAT = 1          # bump when what is stored, or how, changes


def file_hash(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cache_folder(path: str | os.PathLike, kind: str = "") -> Path:
    """Where the file's weights are kept; kind: "" for float32, else a name for another form of them."""
    return cache_dir("pretrained") / (file_hash(path)[:24] + (f"-{kind}" if kind else ""))


def read_cached(folder: Path) -> tuple[PretrainedCheckpoint, dict[str, torch.Tensor]] | None:
    """The checkpoint kept in folder (its state None) and its weights' decode layout, or None if there is
    none (or it is damaged: it is then made again)."""
    try:
        settings = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
        if settings.get("format") != FORMAT:
            return None
        backend = BackendTokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer = Tokenizer(backend, settings["specials"], settings["start"])
        checkpoint = PretrainedCheckpoint(settings["name"], ModelConfig.from_dict(settings["config"]), None,
                                          tokenizer, settings["chat_template"], tuple(settings.get("notes", ())))
        return checkpoint, load_file(str(folder / "model.safetensors"))
    except Exception:           # missing, cut short, or from another version: any of these is rebuilt
        return None


def write_cached(folder: Path, checkpoint: PretrainedCheckpoint, layout: dict[str, torch.Tensor]) -> None:
    """Keep the checkpoint in folder, its weights as `layout` (named tensors: minitx.fast_decode.decode_layout,
    or minitx.quant.stored.layout_tensors), atomically; a cache that cannot be written only costs speed."""
    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder.parent))
        save_file({k: v.contiguous() for k, v in layout.items()}, str(staging / "model.safetensors"))
        checkpoint.tokenizer.backend.save(str(staging / "tokenizer.json"))
        tokenizer = checkpoint.tokenizer
        settings = {"format": FORMAT, "name": checkpoint.name, "config": checkpoint.config.to_dict(),
                    "specials": tokenizer.specials, "start": [tokenizer.id_to_token(i) for i in tokenizer.start_ids],
                    "chat_template": checkpoint.chat_template, "notes": list(checkpoint.notes)}
        (staging / "settings.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)          # a damaged one, found unreadable
        os.rename(staging, folder)
    except OSError:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
