"""minitx's model with the learner's functions in place of its own.

    with learner_code({"attention": my_attention}):
        logits = model(ids)            # every attention call in every layer is the learner's

Each lab names what its function replaces: the model code looks these up by name at
call time (minitx.attention's `explicit_attention`, `repeat_kv`, `rope`, `causal_mask`,
minitx.block's `rms_norm`, ...), so putting the learner's function under that name is all
it takes, and taking it away restores minitx's. Only a sandbox child or a training worker
does this: the server never runs a learner's code.
"""

from __future__ import annotations

import contextlib
import inspect

import torch.nn.functional as F

from .. import attention as attention_module
from .. import block as block_module
from .. import generate as generate_module
from .. import moe as moe_module
from .. import positional as positional_module
from ..attention import GroupedQueryAttention
from ..block import TransformerBlock


def _attention(fn):
    """The learner's attention(q, k, v, mask) -> (out, weights) behind both of minitx's paths."""
    def explicit(q, k, v, mask=None, dropout_p=0.0, training=False):
        n_rep = q.size(1) // k.size(1)
        k, v = attention_module.repeat_kv(k, n_rep), attention_module.repeat_kv(v, n_rep)   # (B, H, S, Dh)
        out, weights = fn(q, k, v, mask)
        if dropout_p and training:         # attention dropout drops weights: the output is made again
            out = F.dropout(weights, dropout_p, True) @ v
        return out, weights

    def fused(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
        if is_causal:
            mask = attention_module.causal_mask(q.size(2), k.size(2), device=q.device)[None, None]
        return explicit(q, k, v, mask, dropout_p, training=dropout_p > 0)[0]

    return [(attention_module, "explicit_attention", explicit), (attention_module, "fused_attention", fused)]


def _causal_mask(fn):
    """The learner's causal_mask(T, S), also where minitx would let the fused kernel build its own."""
    fused_original = attention_module.fused_attention

    def mask(n_queries, n_keys, device=None):
        return fn(n_queries, n_keys).to(device)

    def fused(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
        if is_causal:
            mask, is_causal = attention_module.causal_mask(q.size(2), k.size(2), device=q.device)[None, None], False
        return fused_original(q, k, v, mask, dropout_p, is_causal)

    return [(attention_module, "causal_mask", mask), (attention_module, "fused_attention", fused)]


def _rope(fn):
    """The learner's rope(x, start[, base]): a model with another base than minitx's 10,000
    (SmolLM2's 100,000) passes it on, and a function without a base cannot serve it."""
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

    return [(attention_module, "rope", rotated)]


def _sinusoidal(fn):
    return [(positional_module, "sinusoidal_table", lambda max_len, d_model, base=10_000.0: fn(max_len, d_model))]


def _block(fn):
    """The learner's pre-norm wiring in every pre-norm block (post-norm blocks stay minitx's)."""
    original = TransformerBlock.forward

    def forward(self, x, key_padding_mask=None, need_weights=False, causal=False, cache=None, start=0):
        if not self.pre_norm:
            return original(self, x, key_padding_mask, need_weights, causal, cache, start)
        weights = []

        def attention(h):
            out, w = self.attention(h, key_padding_mask, causal, need_weights, cache, start)
            weights.append(w)
            return self.dropout(out)

        x = fn(x, self.attention_norm, attention, self.ffn_norm, lambda h: self.dropout(self.feed_forward(h)))
        return x, weights[-1] if weights else None

    return [(TransformerBlock, "forward", forward)]


def _kv_step(fn):
    """The learner's cache step for every single new token attending over a KV cache."""
    original = GroupedQueryAttention.forward

    def forward(self, x, key_padding_mask=None, causal=False, need_weights=False, cache=None, start=0):
        if cache is None or x.size(1) != 1 or need_weights or key_padding_mask is not None:
            return original(self, x, key_padding_mask, causal, need_weights, cache, start)
        q, k, v = self.project(x, start)                       # (B, H, 1, Dh), (B, G, 1, Dh) x2
        return self.merge(fn(cache.keys, cache.values, k, v, q, start)), None

    return [(GroupedQueryAttention, "forward", forward)]


def _top_p(fn):
    """The learner's top-p filter after minitx's top-k, wherever generation filters logits."""
    original = generate_module.allowed_logits

    def allowed(logits, top_k=0, top_p=1.0):
        logits = original(logits, top_k=top_k)
        return fn(logits, top_p) if top_p < 1.0 else logits

    return [(generate_module, "allowed_logits", allowed)]


PLUGS = {
    "attention": _attention,
    "repeat_kv": lambda fn: [(attention_module, "repeat_kv", fn)],
    "rope": _rope,
    "causal_mask": _causal_mask,
    "rms_norm": lambda fn: [(block_module, "rms_norm", fn)],
    "block": _block,
    "sinusoidal": _sinusoidal,
    "kv_step": _kv_step,
    "top_p": _top_p,
    "moe_route": lambda fn: [(moe_module, "route", fn)],
}


@contextlib.contextmanager
def learner_code(functions: dict):
    """Inside the block, the model runs the learner's functions ({lab name: function}) in place
    of minitx's; afterwards, minitx's again."""
    unknown = sorted(set(functions) - set(PLUGS))
    if unknown:
        raise ValueError(f"these labs cannot be put into the model: {', '.join(unknown)}.")
    saved = []
    try:
        for name, fn in functions.items():
            for owner, attribute, replacement in PLUGS[name](fn):
                saved.append((owner, attribute, getattr(owner, attribute)))
                setattr(owner, attribute, replacement)
        yield
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)
