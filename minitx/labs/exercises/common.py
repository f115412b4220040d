"""What the exercises share: seeded inputs, and the first lines of every stub."""

from __future__ import annotations

import torch

CHECK_LINE = "Check it: python -m minitx.labs check {name} THIS_FILE (or on the Build it page)."


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """Seeded normal values: the same inputs, and so the same messages, on every run."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def tile_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """The usual wrong repeat of key/value heads: `x.repeat` tiles the whole set, 0, 1, 0, 1, ..."""
    return x.repeat(1, n_rep, 1, 1)


def header(name: str, title: str) -> str:
    return f'"""Lab {name}: {title}.\n\n{CHECK_LINE.format(name=name)}\n"""\n'
