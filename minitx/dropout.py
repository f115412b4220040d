"""Dropout, written out: while training, zero each value with probability p and scale the
survivors by 1 / (1 - p), so every value keeps its expected size; at evaluation, do nothing.

Written out instead of calling F.dropout because on the CPU PyTorch draws that mask one
Bernoulli trial at a time: a uniform draw compared with p gives the same mask, distributed the
same, in half the time (benchmarks/README.md). On a GPU, F.dropout's fused kernel is faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """x with each value zeroed with probability p, the others divided by 1 - p (training only)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p == 1.0:
        return F.dropout(x, p, True)
    keep = torch.rand(x.shape, device=x.device) >= p          # True with probability 1 - p
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))            # (...), x's shape and dtype


class Dropout(nn.Module):
    """`dropout` as a layer: on while the model trains, off in `model.eval()`."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
