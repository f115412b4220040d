"""The per-token MLP of a transformer block: widen to d_ff, a non-linearity, narrow back to d_model.

Attention mixes information between tokens; the feed-forward network then
works on each token alone. Three kinds:

- relu, gelu: up-projection, the non-linearity, down-projection (two matrices);
- swiglu (Shazeer, 2020): a SiLU-gated branch times a linear one, then down
  (three matrices), as in LLaMA and Mixtral.

Notation: B batch, T tokens, D model size, F = d_ff.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .dropout import Dropout


class FeedForward(nn.Module):
    """One MLP, applied to every token on its own. `kind` overrides cfg.ffn (experts are SwiGLU)."""

    def __init__(self, cfg: ModelConfig, kind: str | None = None):
        super().__init__()
        self.kind = kind or cfg.ffn
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if self.kind == "swiglu" else None
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D), or (N, D) for an expert's tokens
        if self.kind == "relu":
            hidden = F.relu(self.up(x))
        elif self.kind == "gelu":
            hidden = F.gelu(self.up(x))
        else:
            hidden = F.silu(self.gate(x)) * self.up(x)
        return self.down(self.dropout(hidden))       # (..., F) -> (..., D)
