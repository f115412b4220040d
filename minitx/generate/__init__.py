"""Writing text with a causal language model: one token at a time, each from the model's guess.

    ids = [EOS] + prompt                                     the end-of-review token starts a review
    repeat:
        logits = model(ids)[-1]                               scores for the next token
        keep the top k, then the smallest set whose probabilities reach p
        divide by the temperature, sample (temperature 0: take the most likely)
        append it; stop at [EOS] or after max_new_tokens

Without a cache every step runs the whole sequence through the model again.
With the KV cache (minitx.decoder.KVCache) the prompt goes through once and
each later step feeds only the newest token: its query attends to the keys
and values every earlier step left in the cache. Same tokens, far less work.
(nanoGPT's `generate` is the dozen-line version of this loop.) Given an engine
(minitx.fast_decode.FastDecoder: a pretrained model comes with one), the steps
go through it: the same numbers, arranged for the CPU's memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch

from ..decoder import CausalLM, KVCache
from ..fast_decode import FastDecoder

MAX_TEMPERATURE = 100.0


@dataclass
class Generation:
    """What one call to `generate` did: the tokens, how sure the model was of each, and why it stopped."""

    prompt_ids: list[int]                 # what the model was given, [EOS] first, cut to fit its context
    new_ids: list[int]                    # the tokens it wrote
    probabilities: list[float]            # the model's probability (temperature 1) of each token it wrote
    top: list[list[tuple[int, float]]]    # per step, the model's n most likely next tokens and their probabilities
    notes: list[str] = field(default_factory=list)   # what was clamped or cut, in words
    stopped_at_eos: bool = False
    seconds: float = 0.0                  # the whole call: the prompt's pass and every new token
    cache_bytes: int | None = None        # the KV cache's size, read from its tensors (None: no cache)
    prefill_seconds: float = 0.0          # the prompt's pass through the model, which gives the first token

    @property
    def tokens_per_second(self) -> float:
        return len(self.new_ids) / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """The tokens after the first (which the prompt's pass gives) over the time they took."""
        steps, seconds = len(self.new_ids) - 1, self.seconds - self.prefill_seconds
        return steps / seconds if steps > 0 and seconds > 0 else self.tokens_per_second

    @property
    def prefill_tokens_per_second(self) -> float:
        return len(self.prompt_ids) / self.prefill_seconds if self.prefill_seconds > 0 else 0.0


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The ids a generation starts from: what starts a text (for minitx's language models the
    end-of-review token: a review begins; nothing for SmolLM2), then the prompt's."""
    return tokenizer.start_ids + tokenizer.encode(prompt).ids


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """ValueError unless temperature is in [0, 100], top_k >= 0 (0: off) and top_p in [0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"temperature must be from 0 (greedy) to {MAX_TEMPERATURE:g}, not {temperature!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a whole number, 0 (off) or more, not {top_k!r}.")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 <= top_p <= 1:
        raise ValueError(f"top_p must be from 0 to 1 (1: off), not {top_p!r}.")


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The logits with every token outside the nucleus set to -inf: the smallest set of most likely
    tokens whose probabilities add up to at least top_p. The most likely token is always kept, so
    top_p 0 is greedy.   # (..., V)"""
    # a stable sort: of equally likely tokens the lower id counts first, on every machine
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True, stable=True)   # (..., V)
    before = probs.cumsum(-1) - probs                                        # mass of the better ones
    drop_sorted = before >= top_p
    drop_sorted[..., 0] = False                                              # the best always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)                       # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def allowed_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                   nucleus: Callable = top_p_filter) -> torch.Tensor:
    """The logits with every token outside the top k and outside the nucleus (`nucleus`: the
    model's swap point "top_p", minitx.swaps) set to -inf.   # (..., V)"""
    if top_k and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[..., -1:]                       # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return nucleus(logits, top_p) if top_p < 1.0 else logits


def next_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator | None = None, nucleus: Callable = top_p_filter) -> int:
    """One token from a (V,) row of logits: the most likely at temperature 0 (which top-k and top-p
    always keep), else sampled from the tokens they keep, after dividing by the temperature."""
    if temperature == 0:
        return int(logits.argmax())
    probs = allowed_logits(logits.float() / temperature, top_k, top_p, nucleus).softmax(-1)   # (V,)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.inference_mode()
def generate(model: CausalLM, prompt_ids: list[int], max_new_tokens: int = 50, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, use_cache: bool = True,
             eos_id: int | Collection[int] | None = None, n_top: int = 10, engine: FastDecoder | None = None,
             on_token: Callable[[int], None] | None = None) -> Generation:
    """Continue prompt_ids (for minitx's own language models, starting with the end-of-review
    token) for up to max_new_tokens tokens, stopping after eos_id (one id or several). The same
    seed gives the same text, with or without the cache. on_token(id) is called as each token
    comes; n_top candidates of every step are kept for the pages (0: none). engine: the model's
    FastDecoder, which takes the steps while the model's swap points hold minitx's functions
    (a learner's function swapped in runs in the model's own forward).

    Everything must fit the model's context (max_len): more new tokens than it holds are cut to
    max_len - 1, and a prompt too long for the rest keeps its last tokens; `notes` says so.
    """
    check_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a whole number of at least 1, not {max_new_tokens!r}.")
    if not prompt_ids:
        raise ValueError("the prompt needs at least one token (the end-of-review token starts a review).")
    context, notes = model.cfg.max_len, []
    if max_new_tokens > context - 1:
        notes.append(f"max new tokens cut from {max_new_tokens} to {context - 1}: the model's context "
                     f"holds {context} tokens, and the prompt needs at least one.")
        max_new_tokens = context - 1
    if len(prompt_ids) + max_new_tokens > context:
        keep = context - max_new_tokens
        notes.append(f"the prompt's first {len(prompt_ids) - keep} of {len(prompt_ids)} tokens were left "
                     f"out: the model's context holds {context} tokens, {max_new_tokens} of them for new ones.")
        prompt_ids = prompt_ids[-keep:]

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt_ids], device=device)                               # (1, T)
    cache = KVCache.for_model(model, batch=1, length=len(prompt_ids) + max_new_tokens) if use_cache else None
    decoder = engine if engine is not None and use_cache and engine.runs(model) else None
    nucleus = model.swaps.get("top_p", top_p_filter)
    stop = {eos_id} if isinstance(eos_id, int) else set(eos_id or ())
    new_ids, probabilities, top, stopped = [], [], [], False
    started = time.perf_counter()
    # the prompt, whole: with a cache its keys and values are kept for every later step
    if decoder is not None:
        logits = decoder.step(prompt_ids, cache, 0)                                # (V,)
    else:
        logits = model(ids, cache=cache, start=0, last_only=True).logits[0, -1]  # (V,)
    prefill_seconds = time.perf_counter() - started
    for step in range(max_new_tokens):
        probs = logits.float().softmax(-1)                                        # the model's own view
        token = next_token(logits, temperature, top_k, top_p, generator, nucleus)
        new_ids.append(token)
        probabilities.append(float(probs[token]))
        if n_top:
            best = probs.topk(min(n_top, probs.numel()))
            top.append(list(zip(best.indices.tolist(), best.values.tolist())))
        if on_token is not None:
            on_token(token)
        if token in stop:
            stopped = True
            break
        if step + 1 == max_new_tokens:
            break
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)                  # (1, T + 1)
        position = ids.size(1) - 1
        if decoder is not None:     # the same step, in the layout a CPU streams fastest
            logits = decoder.step([token], cache, position)
        elif cache is not None:     # only the new token: the cache holds the rest
            logits = model(ids[:, -1:], cache=cache, start=position).logits[0, -1]
        else:                       # the whole sequence again
            logits = model(ids, last_only=True).logits[0, -1]
    seconds = time.perf_counter() - started
    model.train(was_training)
    return Generation(list(prompt_ids), new_ids, probabilities, top, notes, stopped, seconds,
                      cache.nbytes if cache is not None else None, prefill_seconds)
