"""A learner's lab functions at the model's swap points (minitx.swaps), where minitx's would be.

    with model.using(**swaps_for({"attention": my_attention})):
        logits = model(ids).logits          # every layer calls the learner's attention

Each lab whose function the model calls is named after its swap point; most have the swap point's
own signature, and `ADAPTERS` fits the two that do not. Only a learner process or a confined
training run does this: the server never runs a learner's code.
"""

from __future__ import annotations

import inspect

from ..swaps import NAMES

SWAPPABLE = NAMES          # the labs a model can run with: their names are its swap points'


def _rope(fn):
    """The learner's rope(x, start[, base]): a model with another base than 10,000 (SmolLM2's 100,000)
    passes it on, and a function without a base cannot serve it."""
    try:
        takes_base = len(inspect.signature(fn).parameters) >= 3
    except (TypeError, ValueError):
        takes_base = True

    def rotated(x, start=0, base=10_000.0):
        if base == 10_000.0:
            return fn(x, start)
        if not takes_base:
            raise ValueError(f"this model turns RoPE's pairs with base {base:,.0f}, and your function takes no "
                             f"base: give it a third parameter, base=10_000.0, and use it for theta.")
        return fn(x, start, base)

    return rotated


def _causal_mask(fn):
    """The learner's causal_mask(T, S), on the model's device."""
    return lambda n_queries, n_keys, device=None: fn(n_queries, n_keys).to(device)


ADAPTERS = {"rope": _rope, "causal_mask": _causal_mask}


def swaps_for(functions: dict) -> dict:
    """{lab name: the learner's function} as {swap point: the function the model calls there}."""
    unknown = sorted(set(functions) - set(SWAPPABLE))
    if unknown:
        raise ValueError(f"these labs cannot be put into the model: {', '.join(unknown)}.")
    return {name: ADAPTERS[name](fn) if name in ADAPTERS else fn for name, fn in functions.items()}
