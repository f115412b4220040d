"""The model's swap points: functions a model looks up by name where it calls them, so that another
function (a learner's, from the labs) can stand in for minitx's, visibly and only for a while.

    out, weights = self.swaps.get("attention", explicit_attention)(q, k, v, mask)   # in attention.py
    with model.using(attention=my_attention):       # every layer of this model calls yours in here
        logits = model(ids).logits

The idea is Hugging Face's `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`: the caller reads
the function from a table, so a reader sees that it can change, and nothing is patched. Each call
site names minitx's own function beside the name; the table holds only what replaces it. Every module
of one model shares one table, which the model makes and hands down.

    name         minitx's function, called as                          where
    attention    explicit_attention(q, k, v, mask) -> (out, weights)  GroupedQueryAttention.forward
    repeat_kv    repeat_kv(x, n_rep)                                   GroupedQueryAttention.forward
    rope         rope(x, start, base)                                  GroupedQueryAttention.project
    causal_mask  causal_mask(n_queries, n_keys, device)                attention_mask
    kv_step      none: the cache's update, then attention              GroupedQueryAttention.forward
                 (a replacement: kv_step(keys, values, k, v, q, position) -> out)
    rms_norm     rms_norm(x, weight, eps)                              RMSNorm.forward
    block        pre_norm(x, attention_norm, attention, ffn_norm, feed_forward)   TransformerBlock.forward
    sinusoidal   the precomputed sinusoidal_table(max_len, d_model)    SinusoidalPositionalEncoding
    moe_route    route(probs, top_k)                                   MixtureOfExperts.forward
    top_p        top_p_filter(logits, p)                               generate, when it samples
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

NAMES = ("attention", "repeat_kv", "rope", "causal_mask", "kv_step", "rms_norm", "block", "sinusoidal",
         "moe_route", "top_p")


class SwapPoints:
    """The functions that stand in for minitx's in one model, by swap point name (NAMES)."""

    def __init__(self):
        self._replacements: dict[str, Callable] = {}

    def get(self, name: str, minitx_function: Callable | None = None) -> Callable | None:
        """The function to call at swap point `name`: its replacement if there is one, else minitx's."""
        return self._replacements.get(name, minitx_function)

    def swapped(self, name: str) -> bool:
        return name in self._replacements

    @property
    def replaced(self) -> tuple[str, ...]:
        """The swap points whose function is not minitx's now."""
        return tuple(self._replacements)

    def use(self, **functions: Callable) -> None:
        """From now on, these functions at these swap points (a model trained with a learner's code)."""
        unknown = sorted(set(functions) - set(NAMES))
        if unknown:
            raise ValueError(f"a model has no swap point {', '.join(unknown)}; it has {', '.join(NAMES)}.")
        for name, function in functions.items():
            if not callable(function):
                raise ValueError(f"swap point {name} takes a function, not {type(function).__name__}.")
        self._replacements.update(functions)

    @contextlib.contextmanager
    def using(self, **functions: Callable):
        """Inside the block, these functions at these swap points; afterwards, what was there before."""
        saved = dict(self._replacements)
        self.use(**functions)
        try:
            yield self
        finally:
            self._replacements = saved
