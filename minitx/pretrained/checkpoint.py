"""What every source of pretrained weights gives minitx: the config, the weights, the tokenizer, the chat template."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import MODEL_LIMITS, ModelConfig
from ..tokenizer import Tokenizer
from .catalog import llama_config


@dataclass
class PretrainedCheckpoint:
    """A Llama-family checkpoint read into minitx's terms, before the model is built."""

    name: str                                  # how the source calls itself, for the pages
    config: ModelConfig
    state: dict[str, torch.Tensor] | None      # minitx's state dict, float32 (None: the weights came another way)
    tokenizer: Tokenizer
    chat_template: str | None                  # Jinja, as the model was fine-tuned to read
    notes: tuple[str, ...] = ()                # what reading it changed, in words (a format quantized on load)


def context_length(value: int) -> int:
    """A model's context, at most the longest minitx's config takes (generation never holds more)."""
    return min(int(value), MODEL_LIMITS["max_len"][1])


# Where a file minitx exported says that token vectors are scaled by sqrt(D) on the way in
# (minitx.export): a key of config.json, and of a GGUF file's metadata.
EMBEDDING_SCALE, GGUF_EMBEDDING_SCALE = "minitx_embedding_scale", "minitx.embedding_scale"


def checked_llama_config(where: str, head_dim: int | None = None, embedding_scale: float | None = None,
                         **numbers) -> ModelConfig:
    """llama_config with a sentence naming the file when minitx cannot build the model."""
    try:
        cfg = llama_config(**numbers)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} describes a model minitx cannot build: {error}") from None
    if embedding_scale is not None and abs(embedding_scale - math.sqrt(cfg.d_model)) > 1e-4 * math.sqrt(cfg.d_model):
        raise ValueError(f"{where} scales token vectors by {embedding_scale}; minitx scales them by sqrt(d_model) = "
                         f"{math.sqrt(cfg.d_model):.4f} only.")
    if head_dim is not None and head_dim != cfg.head_dim:
        raise ValueError(f"{where} gives heads of {head_dim} dimensions, not d_model / n_heads = {cfg.head_dim}: "
                         f"minitx's heads split the model's width evenly.")
    return cfg
