"""The network a ModelConfig describes: the encoder for "classify", the decoder for "lm"."""

from __future__ import annotations

from torch import nn

from .config import ModelConfig
from .decoder import CausalLM
from .encoder import SentimentClassifier


def build_model(cfg: ModelConfig) -> nn.Module:
    return CausalLM(cfg) if cfg.is_lm else SentimentClassifier(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
