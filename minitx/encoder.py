"""The encoder: token ids in, a sentiment out.

    ids (B, T)
     -> embedding * sqrt(D)           (B, T, D)
     -> + positional code             (B, T, D)   (RoPE instead rotates q, k inside attention)
     -> N x TransformerBlock          (B, T, D)   every token sees every other (no causal mask)
            attention -> add & norm -> feed-forward -> add & norm   (post-norm, the 2017 paper)
            norm -> attention -> add, norm -> feed-forward -> add   (pre-norm, most models since)
     -> pool over real tokens         (B, D)      mean of non-pad tokens, or the [CLS] token
     -> linear                        (B, C)      logits, one per class

Notation: B batch, T tokens, D model size, C classes.
References: Vaswani et al. 2017; Devlin et al. 2019 (BERT, the [CLS] token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .block import TransformerBlock, embed_ids, init_embedding, make_norm, make_positional
from .config import ModelConfig
from .dropout import Dropout
from .swaps import SwapPoints


class Encoder(nn.Module):
    """A stack of layers; pre-norm stacks end with one more norm, since their residual stream is raw."""

    def __init__(self, cfg: ModelConfig, swaps: SwapPoints | None = None):
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(cfg, swaps) for _ in range(cfg.n_layers))
        self.final_norm = make_norm(cfg, swaps) if cfg.norm_position == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, list[torch.Tensor], list]:
        """Returns the final states (B, T, D), the residual stream after each layer, and the weights."""
        states, attentions = [], []
        for layer in self.layers:
            x, weights = layer(x, key_padding_mask=key_padding_mask, need_weights=need_weights)
            states.append(x)
            attentions.append(weights)
        return self.final_norm(x), states, attentions


def mean_pool(hidden: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Average over real tokens only: padding must not dilute a short review.  # (B, T, D) -> (B, D)"""
    weights = key_padding_mask.unsqueeze(-1).to(hidden.dtype)               # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)         # (B, D)


@dataclass
class ClassifierOutput:
    """Everything the pages want to show about one forward pass."""

    logits: torch.Tensor                  # (B, C)
    pooled: torch.Tensor                  # (B, D)
    embeddings: torch.Tensor              # (B, T, D) after positional encoding
    layer_states: list[torch.Tensor]      # n_layers x (B, T, D), the residual stream
    attentions: list[torch.Tensor]        # n_layers x (B, H, T, T)
    key_padding_mask: torch.Tensor        # (B, T), True on real tokens


class SentimentClassifier(nn.Module):
    """Embedding -> positional code -> encoder -> pool -> linear. See the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.swaps = SwapPoints()             # the functions every layer looks up by name (minitx.swaps)
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.embed_scale = init_embedding(self.embedding, cfg.pad_id, cfg.scale_embeddings)
        self.positional = make_positional(cfg, self.swaps)
        self.embedding_dropout = Dropout(cfg.dropout)
        self.encoder = Encoder(cfg, self.swaps)
        self.head_dropout = Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)

    def using(self, **functions):
        """`with model.using(attention=fn): ...`: fn at that swap point inside the block (minitx.swaps)."""
        return self.swaps.using(**functions)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token vectors plus positional code.  # (B, T) -> (B, T, D)"""
        return embed_ids(ids, self.embedding, self.embed_scale, self.positional, self.cfg.max_len)

    def pool(self, hidden: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            return hidden[:, 0]                           # (B, D): the [CLS] token's state
        return mean_pool(hidden, key_padding_mask)        # (B, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of padded ids (B, T); the fast path used in training."""
        return self.run(ids).logits

    def run(self, ids: torch.Tensor, need_weights: bool = False) -> ClassifierOutput:
        """The forward pass with its intermediate results; need_weights uses the explicit path."""
        key_padding_mask = ids != self.cfg.pad_id                                # (B, T)
        return self.run_embeddings(self.embed(ids), key_padding_mask, need_weights)

    def run_embeddings(self, x: torch.Tensor, key_padding_mask: torch.Tensor,
                       need_weights: bool = False) -> ClassifierOutput:
        """The forward pass from embedded tokens on; attribution (minitx.predict) starts here."""
        x = self.embedding_dropout(x)                                            # (B, T, D)
        hidden, states, attentions = self.encoder(x, key_padding_mask, need_weights)
        pooled = self.pool(hidden, key_padding_mask)                             # (B, D)
        logits = self.classifier(self.head_dropout(pooled))                     # (B, C)
        return ClassifierOutput(logits, pooled, x, states, attentions, key_padding_mask)
