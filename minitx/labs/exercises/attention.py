"""Labs of the attention page: scaled dot-product attention, repeat_kv, the causal mask."""

from __future__ import annotations

import math

import torch

from ...attention import causal_mask, explicit_attention, repeat_kv
from .. import pictures
from ..lab import Case, Lab, Mistake, Output
from .common import header, randn, tile_heads

# -- attention -----------------------------------------------------------------------------

ATTENTION_STUB = header("attention", "scaled dot-product attention") + '''
import math

import torch
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(Dh)) v, and the weights it used.

    q     (B, H, T, Dh)   a query per token: what it looks for
    k     (B, H, S, Dh)   a key per position: what it offers (S = T, or more with a KV cache)
    v     (B, H, S, Dh)   a value per position: what it passes on
    mask  (B or 1, 1, T, S), bool: True where query t may look at key s; None: everywhere
    returns out (B, H, T, Dh) and weights (B, H, T, S); each row of weights sums to 1

    Every query may look at one key at least. Leave q, k, v and mask as they are.
    """
    raise NotImplementedError
'''


def attention_reference(q, k, v, mask=None):
    return explicit_attention(q, k, v, mask)


def _scores(q, k):
    return q @ k.transpose(-2, -1)


def _finish(scores, v, mask, dim=-1):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim)
    return weights @ v, weights


def _no_scale(q, k, v, mask=None):
    return _finish(_scores(q, k), v, mask)


def _scale_by_dh(q, k, v, mask=None):
    return _finish(_scores(q, k) / q.size(-1), v, mask)


def _scale_by_tokens(q, k, v, mask=None):
    return _finish(_scores(q, k) / math.sqrt(q.size(-2)), v, mask)


def _softmax_over_queries(q, k, v, mask=None):
    return _finish(_scores(q, k) / math.sqrt(q.size(-1)), v, mask, dim=-2)


def _mask_inverted(q, k, v, mask=None):
    return _finish(_scores(q, k) / math.sqrt(q.size(-1)), v, None if mask is None else ~mask)


def _mask_ignored(q, k, v, mask=None):
    return _finish(_scores(q, k) / math.sqrt(q.size(-1)), v, None)


def _mask_after_softmax(q, k, v, mask=None):
    weights = (_scores(q, k) / math.sqrt(q.size(-1))).softmax(-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


def _masked_to_zero(q, k, v, mask=None):
    scores = _scores(q, k) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores * mask
    weights = scores.softmax(-1)
    return weights @ v, weights


def _mask_times_inf(q, k, v, mask=None):
    scores = _scores(q, k) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores + (~mask).float() * float("-inf")        # 0 x -inf = NaN where allowed
    weights = scores.softmax(-1)
    return weights @ v, weights


def _exp_overflow(q, k, v, mask=None):
    scores = _scores(q, k) / math.sqrt(q.size(-1))
    exp = scores.exp()
    if mask is not None:
        exp = exp * mask
    weights = exp / exp.sum(-1, keepdim=True)
    return weights @ v, weights


def _scale_multiplied(q, k, v, mask=None):
    return _finish(_scores(q, k) * math.sqrt(q.size(-1)), v, mask)


def _no_softmax(q, k, v, mask=None):
    scores = _scores(q, k) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    return scores @ v, scores


def _causal_leak(fn, case: Case, call) -> str | None:
    """With a causal mask, changing the last key and value must not move any earlier query."""
    mask = case.args["mask"]
    if mask is None or mask.all():
        return None
    blind = ~mask[..., :, -1].any(0).any(0)                       # (T,): queries that cannot see the last key
    if not blind.any():
        return None
    changed = Case(case.label, {**case.args, "k": case.args["k"].clone(), "v": case.args["v"].clone()}, case.dims)
    changed.args["k"][..., -1, :] += 3.0
    changed.args["v"][..., -1, :] -= 3.0
    before, after = call(fn, case)[0], call(fn, changed)[0]
    moved = (before - after).abs().amax(dim=(0, 1, 3))[blind]     # per blind query
    if (moved > 1e-6).any():
        t = int(blind.nonzero()[int(moved.argmax())])
        return (f"Query {t}'s output changed when only the last key and value changed, which its mask hides: "
                "a later token changes an earlier output. Apply the mask to the scores, before the softmax.")
    return None


def _hidden_keys_weighted(fn, case: Case, call) -> str | None:
    """Weight on keys the mask hides: the mask read backwards, or not used at all."""
    mask = case.args["mask"]
    if mask is None or mask.all():
        return None
    weights = call(fn, case)[1]                                   # (B, H, T, S)
    hidden = (~mask).expand_as(weights)
    on_hidden = (weights * hidden).sum(-1)                        # (B, H, T): weight given to hidden keys
    mixed_rows = hidden.any(-1) & ~hidden.all(-1)
    if not (on_hidden[mixed_rows] > 1e-6).any():
        return None
    if (on_hidden[mixed_rows] > 1 - 1e-6).all():
        return ("The mask is the wrong way round: all the weight went to the keys it hides. True means may "
                "look: fill the scores where the mask is False (`~mask`).")
    return "Keys the mask hides got weight: fill their scores with -inf before the softmax."


def attention_cases() -> list[Case]:
    def case(label, B, H, T, S, Dh, mask=None, scale=1.0, seed=0):
        q = randn(B, H, T, Dh, seed=seed, scale=scale)
        k = randn(B, H, S, Dh, seed=seed + 1, scale=scale)
        v = randn(B, H, S, Dh, seed=seed + 2)
        return Case(label, {"q": q, "k": k, "v": v, "mask": mask}, {"B": B, "H": H, "T": T, "S": S, "Dh": Dh})

    padding = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    padding[1, ..., 3:] = False                                    # review 1 has 2 [PAD] at the end
    return [
        case("random q, k and v, no mask (B 2, H 3, T 5, S 5, Dh 4)", 2, 3, 5, 5, 4),
        case("a padding mask per review (B, 1, T, S): the second review's last two keys are [PAD]",
             2, 3, 5, 5, 4, mask=padding, seed=10),
        case("a causal mask (1, 1, T, S)", 2, 3, 5, 5, 4, mask=causal_mask(5, 5)[None, None], seed=20),
        case("T < S: 2 queries, the last 2 of 6 positions (a KV cache), causal", 2, 3, 2, 6, 4,
             mask=causal_mask(2, 6)[None, None], seed=30),
        case("a larger head, Dh 16, where the scale matters more", 1, 2, 4, 4, 16, scale=2.0, seed=40),
        case("large scores (q and k 30 times larger): exp overflows unless the row's max comes off first",
             1, 2, 3, 3, 8, mask=causal_mask(3, 3)[None, None], scale=30.0, seed=50),
        case("one query, T 1, as when generating", 2, 3, 1, 7, 4, seed=60),
    ]


def attention_picture(case: Case, want, got) -> dict:
    T, S = case.dims["T"], case.dims["S"]
    return pictures.heatmap("weights of review 0, head 0", want[1][0, 0], got[1][0, 0], "query t", "key s",
                            [str(t) for t in range(T)], [str(s) for s in range(S)])


ATTENTION = Lab(
    name="attention", function="attention", title="Scaled dot-product attention", page="attention",
    task="Write the heart of the transformer: every query scores every key, the scores go through a "
         "softmax, and the output is the weighted average of the values. Return the weights too "
         "(the page draws them). The mask says which keys a query may look at.",
    stub=ATTENTION_STUB, reference=attention_reference, cases=attention_cases,
    outputs=(Output("out", "(B, H, T, Dh)"), Output("weights", "(B, H, T, S)")),
    answer=(explicit_attention,),
    mistakes=(
        Mistake("No 1/√Dh: divide the scores q kᵀ by math.sqrt(Dh) (Dh = q.size(-1)) before the softmax, "
                "or the softmax saturates as heads grow.", _no_scale, ("@", "matmul", "einsum")),
        Mistake("The scores were divided by Dh, not by its square root: math.sqrt(q.size(-1)).", _scale_by_dh, ("/",)),
        Mistake("The scores were multiplied by √Dh: divide them by it, so that their spread stays near 1 whatever "
                "the head size.", _scale_multiplied, ("sqrt", "*")),
        Mistake("The scores were divided by the square root of the number of tokens, q.size(-2); "
                "the scale is √Dh, the head size, q.size(-1).", _scale_by_tokens, ("sqrt", "/")),
        Mistake("The softmax ran over the queries (dim -2): each query's weights over the keys, the last "
                "dimension, must sum to 1 (softmax(dim=-1)).", _softmax_over_queries, ("softmax",)),
        Mistake("No softmax: the scores themselves weighted the values. softmax(dim=-1) turns each query's scores "
                "into weights that are positive and sum to 1.", _no_softmax),
        Mistake("The mask is the wrong way round: True means may look. Fill -inf where the mask is "
                "False: scores.masked_fill(~mask, float('-inf')).", _mask_inverted, ("masked_fill", "where")),
        Mistake("The mask was ignored: hidden keys got weight. Fill their scores with -inf before the softmax.",
                _mask_ignored),
        Mistake("The mask was applied after the softmax, so the rows no longer sum to 1: hide the scores "
                "(-inf) before it.", _mask_after_softmax, ("softmax",)),
        Mistake("Hidden scores were set to 0, not -inf: exp(0) = 1 still gives a hidden key weight. "
                "Use scores.masked_fill(~mask, float('-inf')).", _masked_to_zero, ("masked_fill", "where", "*")),
        Mistake("NaN from 0 × -inf: multiplying the mask by -inf gives NaN where the mask allows. "
                "Use scores.masked_fill(~mask, float('-inf')).", _mask_times_inf, ("*",)),
        Mistake("exp overflowed: with large scores exp(scores) is inf, and inf / inf is NaN. Subtract each "
                "row's max before exp (the answer does not change), or use torch.softmax.", _exp_overflow, ("exp",)),
    ),
    properties=(_hidden_keys_weighted, _causal_leak),
    rtol=1e-4, atol=1e-5, picture=attention_picture,
    hints=(
        "Scores: `q @ k.transpose(-2, -1)` is (B, H, T, S), one score per query and key. Divide by "
        "`math.sqrt(q.size(-1))`.",
        "The mask is True where a query may look: `scores.masked_fill(~mask, float('-inf'))` hides the "
        "rest, and `softmax(dim=-1)` turns -inf into weight 0. The mask broadcasts over heads.",
        "`weights = scores.softmax(dim=-1)`; `out = weights @ v`; return `out, weights`.",
    ),
)

# -- repeat_kv -----------------------------------------------------------------------------

REPEAT_KV_STUB = header("repeat_kv", "key/value heads shared by groups of query heads") + '''
import torch
from torch import Tensor


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head n_rep times, so that G heads serve H = G * n_rep query heads.

    x      (B, G, S, Dh)   G key/value heads
    n_rep  how many query heads read each key/value head (1: multi-head attention, x as it is)
    returns (B, G * n_rep, S, Dh): query head h reads key/value head h // n_rep, so with
    n_rep 2 the heads come out 0, 0, 1, 1, ... (not 0, 1, 0, 1)
    """
    raise NotImplementedError
'''


def _expanded_after(x, n_rep, axis):
    """A new axis of n_rep copies after `axis` (1: right, after G; 2: after S; 3: after Dh), then
    (B, G * n_rep, S, Dh)."""
    B, G, S, Dh = x.shape
    sizes = [B, G, S, Dh]
    sizes.insert(axis + 1, n_rep)
    return x.unsqueeze(axis + 1).expand(*sizes).reshape(B, G * n_rep, S, Dh)


def _head_zero(x, n_rep):
    B, G, S, Dh = x.shape
    return x[:, :1].expand(B, G * n_rep, S, Dh)


def repeat_kv_cases() -> list[Case]:
    def case(label, B, G, S, Dh, n_rep, seed):
        x = randn(B, G, S, Dh, seed=seed) + torch.arange(G).view(1, G, 1, 1) * 10.0   # head g near 10 g
        return Case(label, {"x": x, "n_rep": n_rep}, {"B": B, "G": G, "S": S, "Dh": Dh, "G * n_rep": G * n_rep})

    return [
        case("2 key/value heads, each serving 3 query heads (B 1, G 2, S 5, Dh 4)", 1, 2, 5, 4, 3, 0),
        case("n_rep 1: multi-head attention, nothing to repeat", 2, 3, 5, 4, 1, 1),
        case("one key/value head for 4 query heads (multi-query attention)", 2, 1, 3, 4, 4, 2),
        case("3 key/value heads, 2 query heads each, random values", 2, 3, 6, 5, 2, 3),
    ]


def repeat_kv_picture(case: Case, want, got) -> dict:
    H = want[0].size(1)
    return pictures.heatmap("head by head, token 0 of review 0 (head g's values are near 10 g)",
                            want[0][0, :, 0], got[0][0, :, 0], "query head h", "dimension",
                            [str(h) for h in range(H)])


REPEAT_KV = Lab(
    name="repeat_kv", function="repeat_kv", title="Sharing key/value heads (repeat_kv)", page="attention",
    task="Grouped-query attention keeps fewer key/value heads (G) than query heads (H). Before "
         "attention, each key/value head is repeated for the query heads that read it. The order "
         "matters: query head h reads key/value head h // n_rep.",
    stub=REPEAT_KV_STUB, reference=repeat_kv, cases=repeat_kv_cases,
    outputs=(Output("the result", "(B, G * n_rep, S, Dh)"),), answer=(repeat_kv,),
    mistakes=(
        Mistake("The heads came out in the wrong order, 0, 1, 0, 1: `x.repeat` tiles the whole set of heads. "
                "Query head h reads key/value head h // n_rep, so they must come out 0, 0, 1, 1 "
                "(`repeat_interleave` on dim 1, or expand a new dimension after G).", tile_heads,
                ("repeat", "expand", "cat")),
        Mistake("The copies went in after the tokens (a new axis after S) and the reshape mixed tokens into heads: "
                "put the new axis right after G, `x[:, :, None]`, then expand and reshape.",
                lambda x, n_rep: _expanded_after(x, n_rep, 2), ("expand", "unsqueeze")),
        Mistake("The copies went in after Dh (a new axis at the end) and the reshape mixed dimensions into heads "
                "and tokens: the new axis belongs right after G, `x[:, :, None]`.",
                lambda x, n_rep: _expanded_after(x, n_rep, 3), ("expand", "unsqueeze")),
        Mistake("Every query head reads key/value head 0: `x[:, :1]` keeps only the first. Query head h reads "
                "key/value head h // n_rep.", _head_zero, ("expand",)),
        Mistake("The tokens were repeated (dim 2), not the heads: the result needs G * n_rep heads on dim 1.",
                lambda x, n_rep: x.repeat_interleave(n_rep, dim=2), ("repeat_interleave", "repeat")),
        Mistake("The batch was repeated (dim 0), not the heads: the result needs G * n_rep heads on dim 1.",
                lambda x, n_rep: x.repeat_interleave(n_rep, dim=0), ("repeat_interleave", "repeat")),
        Mistake("The head size was repeated (the last dim), not the heads: the result needs G * n_rep heads on dim 1.",
                lambda x, n_rep: x.repeat_interleave(n_rep, dim=-1), ("repeat_interleave", "repeat")),
        Mistake("x came back as it was: with n_rep > 1 each key/value head must appear n_rep times, for the "
                "query heads that read it.", lambda x, n_rep: x),
        Mistake("Each head was repeated G times (the number of key/value heads): repeat it n_rep times, the "
                "number of query heads that read it.",
                lambda x, n_rep: x.repeat_interleave(x.size(1), dim=1), ("repeat_interleave",)),
        Mistake("Each head was repeated G * n_rep times, once per query head: repeat it n_rep times, so that "
                "there are G * n_rep heads in all.",
                lambda x, n_rep: x.repeat_interleave(x.size(1) * n_rep, dim=1), ("repeat_interleave",)),
    ),
    rtol=0.0, atol=0.0, picture=repeat_kv_picture,
    hints=(
        "The result has G * n_rep heads on dim 1; the batch, tokens and head size stay.",
        "`torch.repeat_interleave(x, n_rep, dim=1)` repeats each head in place. Without it: "
        "`x[:, :, None]` is (B, G, 1, S, Dh); `.expand(B, G, n_rep, S, Dh)` copies nothing.",
        "Then `.reshape(B, G * n_rep, S, Dh)`: head g's n_rep copies end up side by side.",
    ),
)

# -- causal_mask ---------------------------------------------------------------------------

CAUSAL_STUB = header("causal_mask", "the decoder's causal mask") + '''
import torch
from torch import Tensor


def causal_mask(T: int, S: int) -> Tensor:
    """Which keys each query may look at in a decoder: itself and every position before it.

    The T queries are the last T of S positions (S = T, or more when a KV cache holds the
    earlier ones), so query t stands at position S - T + t.
    returns a bool tensor (T, S): True where query t may look at key s
    """
    raise NotImplementedError
'''


def _no_offset(T, S):
    return torch.ones(T, S, dtype=torch.bool).tril()


def _inverted(T, S):
    return ~causal_mask(T, S)


def _strict(T, S):
    return torch.ones(T, S, dtype=torch.bool).tril(S - T - 1)


def _float_mask(T, S):
    return causal_mask(T, S).float()


def _additive(T, S):
    return torch.zeros(T, S).masked_fill(~causal_mask(T, S), float("-inf"))


def _sees_the_future(fn, case: Case, call) -> str | None:
    got = call(fn, case)[0]
    T, S = case.dims["T"], case.dims["S"]
    for t in range(T):
        for s in range(S - T + t + 1, S):
            if bool(got[t, s]):
                return (f"Query {t} (position {S - T + t}) may look at key {s}, which comes after it: a later "
                        "token would change an earlier output.")
    return None


def causal_cases() -> list[Case]:
    return [Case(label, {"T": T, "S": S}, {"T": T, "S": S}) for label, T, S in (
        ("T 4, S 4: a whole text at once", 4, 4),
        ("T 1, S 5: one new token, 4 in the cache", 1, 5),
        ("T 3, S 7: three new tokens, 4 in the cache", 3, 7),
        ("T 1, S 1: the very first token", 1, 1),
        ("T 6, S 6", 6, 6),
    )]


def causal_picture(case: Case, want, got) -> dict:
    return pictures.heatmap("True (1) where a query may look", want[0].float(), got[0].float(), "query t", "key s")


CAUSAL_MASK = Lab(
    name="causal_mask", function="causal_mask", title="The causal mask", page="decoder",
    task="A decoder predicts each next token from the tokens before it, so no token may look "
         "ahead. With a KV cache the queries are only the newest T of S positions: the diagonal "
         "moves.",
    stub=CAUSAL_STUB, reference=causal_mask, cases=causal_cases,
    outputs=(Output("the mask", "(T, S)", dtype=torch.bool),), answer=(causal_mask,),
    mistakes=(
        Mistake("The diagonal is in the wrong place when T < S: query t stands at position S - T + t, so it may "
                "look at keys 0 ... S - T + t (`tril(diagonal=S - T)`).", _no_offset, ("tril",)),
        Mistake("The diagonal moved the wrong way: query t stands at position S - T + t, so the diagonal moves "
                "right by S - T, `tril(S - T)`, not `tril(T - S)`.",
                lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(T - S), ("tril",)),
        Mistake("True and False are swapped: True means may look (itself and the past), False hides "
                "the future.", _inverted),
        Mistake("A token must see itself: the diagonal belongs to what it may look at.", _strict, ("tril", "triu")),
        Mistake("`triu` keeps the upper triangle, the future: `tril` keeps a query's own position and the past.",
                lambda T, S: torch.ones(T, S, dtype=torch.bool).triu(), ("triu",)),
        Mistake("Each query may look one key ahead: `tril(S - T)` stops at its own position; one more is the future.",
                lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T + 1), ("tril",)),
        Mistake("A mask of 0.0 and 1.0: the attention lab fills the scores where the mask is False, so it needs "
                "a bool tensor (`torch.ones(T, S, dtype=torch.bool)`).", _float_mask, ("ones", "tril")),
        Mistake("An additive mask, 0 where a query may look and -inf where not (as some code adds to the scores): "
                "here the mask is bool, True where a query may look.", _additive, ("masked_fill", "full", "zeros")),
        Mistake("The mask is (S, T), keys down and queries across: a row per query, (T, S).",
                lambda T, S: torch.ones(S, T, dtype=torch.bool).tril(S - T), ("ones",)),
        Mistake("The whole (S, S) mask came back: the queries are the last T positions, its last T rows, `[-T:]`.",
                lambda T, S: causal_mask(S, S), ("ones", "tril")),
        Mistake("A (T, T) mask: the queries look at all S keys, the T new ones and the S - T in the cache.",
                lambda T, S: causal_mask(T, T), ("ones", "tril")),
    ),
    properties=(_sees_the_future,),
    rtol=0.0, atol=0.0, picture=causal_picture,
    hints=(
        "Start from `torch.ones(T, S, dtype=torch.bool)`: everything allowed.",
        "`tril(diagonal)` keeps the lower triangle. With T = S, diagonal 0 is the answer.",
        "Query t is at position S - T + t: `tril(S - T)` moves the diagonal right by S - T.",
    ),
)
