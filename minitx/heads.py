"""What a trained language model's attention heads do, and what each layer would say: a head finder and a logit lens.

Every head of every layer turns each token's query into a distribution over the
tokens before it. Most heads are hard to name, but three kinds are common in
trained language models, and each has a one-number test:

- previous-token heads look at the token just before: the mean weight from
  position t to t - 1. They let the next layer know which token came before.
- attention sinks put their weight on the first token when nothing else is
  worth attending to (softmax must put the weight somewhere): the mean weight
  from positions t >= 1 to position 0 (Xiao et al. 2023, "StreamingLLM").
- induction heads complete patterns: on seeing token A, they look at the token
  that followed A last time, and predict it again. Test: random tokens
  r_1 ... r_n, then the same n again; at each position t of the repeat, the
  weight on t - n + 1, the token after the previous occurrence of the current
  one (Olsson et al. 2022, "In-context learning and induction heads"). Random
  tokens have no meaning, so only copying from context can score.

The logit lens (nostalgebraist 2020) reads the residual stream after each layer
through the final norm and the output head, as if the model ended there: which
token each layer would predict next, and from which layer the answer holds.

Notation: L layers, H query heads, T tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decoder import CausalLM

SCORES = ("previous token", "first token", "induction")


@torch.inference_mode()
def attention_maps(model: CausalLM, ids: list[int]) -> torch.Tensor:
    """Every head's attention weights on one text, from the explicit path.  -> (L, H, T, T)"""
    out = model(torch.tensor([ids], device=next(model.parameters()).device), need_weights=True)
    return torch.stack([weights[0] for weights in out.attentions]).float().cpu()


def previous_token_score(maps: torch.Tensor) -> torch.Tensor:
    """Mean weight from each position t >= 1 on t - 1.  (L, H, T, T) -> (L, H)"""
    return maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def first_token_score(maps: torch.Tensor) -> torch.Tensor:
    """Mean weight from each position t >= 1 on position 0.  (L, H, T, T) -> (L, H)"""
    return maps[..., 1:, 0].mean(-1)


def induction_score(maps: torch.Tensor, period: int) -> torch.Tensor:
    """On a sequence repeated with this period: the mean weight from each position t of the repeat on
    t - period + 1, the token after the current token's previous occurrence.  (L, H, T, T) -> (L, H)"""
    length = maps.size(-1)
    if length < period + 2:
        raise ValueError(f"an induction score needs the repeat to be at least 2 tokens long: {length} tokens "
                         f"with a period of {period}.")
    return maps.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)[..., 1:].mean(-1)


def repeated_random_tokens(n: int, low: int, high: int, seed: int = 0, start: list[int] | None = None) -> list[int]:
    """start, then n random ids from [low, high), then the same n again: an induction test's text."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(low, high, (n,), generator=generator).tolist()
    return list(start or []) + tokens + tokens


@dataclass
class HeadScores:
    """The three scores of every head, (L, H) each, and the texts they came from."""

    previous_token: torch.Tensor
    first_token: torch.Tensor
    induction: torch.Tensor
    text_ids: list[int]
    induction_ids: list[int]

    def by_name(self, name: str) -> torch.Tensor:
        return {"previous token": self.previous_token, "first token": self.first_token,
                "induction": self.induction}[name]

    def top(self, name: str, k: int = 5) -> list[tuple[int, int, float]]:
        """The k highest-scoring heads: (layer, head, score)."""
        scores = self.by_name(name)
        best = scores.flatten().topk(min(k, scores.numel()))
        heads = scores.size(1)
        return [(int(i) // heads, int(i) % heads, float(v)) for v, i in zip(best.values, best.indices)]


def find_heads(model: CausalLM, text_ids: list[int], n_random: int = 50, low: int = 0, high: int | None = None,
               seed: int = 0) -> HeadScores:
    """Score every head of the model: previous-token and first-token on text_ids (at least 2 ids),
    induction on n_random random ids from [low, high) repeated once."""
    if len(text_ids) < 2:
        raise ValueError(f"the head finder needs a text of at least 2 tokens, not {len(text_ids)}.")
    maps = attention_maps(model, text_ids)
    start = text_ids[:1]               # the text's first token (a model may treat position 0 apart)
    induction_ids = repeated_random_tokens(n_random, low, high or model.cfg.vocab_size, seed, start)
    repeat = attention_maps(model, induction_ids)[..., len(start):, len(start):]      # the sequence, twice
    return HeadScores(previous_token_score(maps), first_token_score(maps), induction_score(repeat, n_random),
                      text_ids, induction_ids)


@torch.inference_mode()
def logit_lens(model: CausalLM, ids: list[int], k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """What each layer would predict next at each position: the residual stream after layer l through
    the final norm and the tied output head. Returns the top k ids and their probabilities.
    -> (L, T, k) ids, (L, T, k) probabilities"""
    out = model(torch.tensor([ids], device=next(model.parameters()).device))
    states = torch.stack([state[0] for state in out.layer_states])                      # (L, T, D)
    logits = model.head(model.final_norm(states))                                       # (L, T, V)
    probs = logits.float().softmax(-1)
    best = probs.topk(k, dim=-1)
    return best.indices.cpu(), best.values.cpu()


def first_layer_with(top_ids: torch.Tensor, position: int, token: int) -> int | None:
    """The first layer from which the top prediction at `position` is `token` and stays so to the last
    layer (0-based), or None if the last layer does not predict it.  top_ids: (L, T, k)"""
    column = top_ids[:, position, 0].tolist()
    if column[-1] != token:
        return None
    layer = len(column) - 1
    while layer > 0 and column[layer - 1] == token:
        layer -= 1
    return layer
