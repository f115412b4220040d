"""The encoder: token ids in, a sentiment out.

    ids (B, T)
     -> embedding * sqrt(D)           (B, T, D)
     -> + positional code             (B, T, D)   (RoPE instead rotates q, k inside attention)
     -> N x EncoderLayer              (B, T, D)
            attention -> add & norm -> feed-forward -> add & norm   (post-norm, the 2017 paper)
            norm -> attention -> add, norm -> feed-forward -> add   (pre-norm, most models since)
     -> pool over real tokens         (B, D)      mean of non-pad tokens, or the [CLS] token
     -> linear                        (B, C)      logits, one per class

Notation: B batch, T tokens, D model size, C classes, F feed-forward size.
References: Vaswani et al. 2017 (the layer); Xiong et al. 2020 (pre- vs
post-norm); Zhang & Sennrich 2019 (RMSNorm); Shazeer 2020 (SwiGLU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import GroupedQueryAttention
from .config import ModelConfig
from .positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain; no mean, no bias.

    Cheaper than LayerNorm and, in practice, just as good.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        rms = x.float().pow(2).mean(-1, keepdim=True).add(self.eps).rsqrt()   # (B, T, 1)
        return (x.float() * rms).type_as(x) * self.weight


def make_norm(cfg: ModelConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model)


class FeedForward(nn.Module):
    """The per-token MLP: widen to d_ff, a non-linearity, narrow back to d_model.

    SwiGLU multiplies a SiLU-gated branch by a linear one (three matrices
    instead of two).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.ffn
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff) if cfg.ffn == "swiglu" else None
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        if self.kind == "relu":
            hidden = F.relu(self.up(x))
        elif self.kind == "gelu":
            hidden = F.gelu(self.up(x))
        else:
            hidden = F.silu(self.gate(x)) * self.up(x)
        return self.down(self.dropout(hidden))       # (B, T, F) -> (B, T, D)


class EncoderLayer(nn.Module):
    """One block: every token looks at the others (attention), then thinks alone (FFN)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.attention = GroupedQueryAttention(cfg)
        self.attention_norm = make_norm(cfg)
        self.feed_forward = FeedForward(cfg)
        self.ffn_norm = make_norm(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre_norm:
            attended, weights = self.attention(self.attention_norm(x), key_padding_mask,
                                               need_weights=need_weights)
            x = x + self.dropout(attended)
            x = x + self.dropout(self.feed_forward(self.ffn_norm(x)))
        else:
            attended, weights = self.attention(x, key_padding_mask, need_weights=need_weights)
            x = self.attention_norm(x + self.dropout(attended))
            x = self.ffn_norm(x + self.dropout(self.feed_forward(x)))
        return x, weights                              # (B, T, D), (B, H, T, T) or None


class Encoder(nn.Module):
    """A stack of layers; pre-norm stacks end with one more norm, since their residual stream is raw."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.final_norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, list[torch.Tensor], list]:
        """Returns the final states (B, T, D), the residual stream after each layer, and the weights."""
        states, attentions = [], []
        for layer in self.layers:
            x, weights = layer(x, key_padding_mask, need_weights)
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
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        # N(0, 1/D) entries, times sqrt(D) below: unit-size vectors, the size of the PE table
        nn.init.normal_(self.embedding.weight, std=cfg.d_model ** -0.5)
        with torch.no_grad():
            self.embedding.weight[cfg.pad_id].zero_()
        self.embed_scale = math.sqrt(cfg.d_model)
        if cfg.pos_encoding == "sinusoidal":
            self.positional = SinusoidalPositionalEncoding(cfg.max_len, cfg.d_model)
        elif cfg.pos_encoding == "learned":
            self.positional = LearnedPositionalEncoding(cfg.max_len, cfg.d_model)
        else:  # "rope" works inside attention; "none" leaves the model order-blind
            self.positional = nn.Identity()
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token vectors plus positional code.  # (B, T) -> (B, T, D)"""
        if ids.size(1) > self.cfg.max_len:
            raise ValueError(f"a sequence of {ids.size(1)} tokens is longer than max_len "
                             f"{self.cfg.max_len}; truncate it first.")
        return self.positional(self.embedding(ids) * self.embed_scale)

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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
