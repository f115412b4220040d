"""Attention as it learns: the attention maps of one fixed review, recorded during training.

A freshly initialised model spreads its attention almost evenly; a trained
one has heads that pick out words. `AttentionSnapshots` is a training
callback that runs one short test review through the model (explicit path,
eval mode, no gradients, no random numbers drawn) at step 0, at every
evaluation and every `every` steps, and keeps the maps, so a page can slide
through them from random to trained.
"""

from __future__ import annotations

import torch

from .data import EncodedSplit
from .encoder import SentimentClassifier
from .tokenizer import Tokenizer

SNAPSHOT_TOKENS = 40       # a heatmap wider than this stops being readable
DECIMALS = 3               # weights are stored rounded: 0.001 is finer than any colour step


def pick_review(test: EncodedSplit, max_tokens: int = SNAPSHOT_TOKENS) -> int:
    """The index of the test review to watch: the shortest one that still fills most of the window."""
    if len(test) == 0:
        raise ValueError("there is no test review to take attention snapshots of.")
    lengths = [len(seq) for seq in test.sequences]
    long_enough = [i for i, n in enumerate(lengths) if n >= max_tokens * 3 // 4]
    candidates = long_enough or range(len(test))
    return min(candidates, key=lambda i: (lengths[i], i))


class AttentionSnapshots:
    """A callback that records (layers, heads, T, T) attention maps of one review over training."""

    def __init__(self, model: SentimentClassifier, ids: list[int], tokenizer: Tokenizer,
                 every: int = 0, max_tokens: int = SNAPSHOT_TOKENS):
        if not ids:
            raise ValueError("a snapshot needs a review of at least one token.")
        self.model = model
        self.ids = torch.tensor([ids[:max_tokens]])                       # (1, T)
        self.tokens = [tokenizer.id_to_token(i) or "?" for i in self.ids[0].tolist()]
        self.every = every
        self.steps: list[int] = []
        self.maps: list[list] = []                                       # per step: (L, H, T, T)
        self.take(0)                                                     # the random model

    @torch.inference_mode()
    def take(self, step: int) -> None:
        if self.steps and self.steps[-1] == step:
            return                                  # an evaluation and a periodic snapshot coincide
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out = self.model.run(self.ids.to(device), need_weights=True)
        self.model.train(was_training)
        maps = torch.stack([a[0] for a in out.attentions]).float().cpu()   # (L, H, T, T)
        self.steps.append(step)
        # rounded in float64, so 0.036 is written to metrics.json as 0.036, not 0.035999998450279236
        self.maps.append(maps.double().round(decimals=DECIMALS).tolist())

    def on_step(self, event: dict) -> None:
        if self.every and event["step"] % self.every == 0:
            self.take(event["step"])

    def on_eval(self, event: dict) -> None:
        self.take(event["step"])

    def latest(self) -> dict:
        return {"step": self.steps[-1], "maps": self.maps[-1]}

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "steps": list(self.steps), "maps": list(self.maps)}

    def restore(self, saved: dict) -> None:
        """Go on from a stopped run's snapshots (its to_dict), which began with the same review."""
        self.steps, self.maps = list(saved["steps"]), list(saved["maps"])
