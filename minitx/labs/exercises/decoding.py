"""Labs of the decoder page: a KV-cache step, top-p sampling's filter, mixture-of-experts routing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...attention import explicit_attention, repeat_kv
from ...decoder import LayerCache
from ...generate import allowed_logits, top_p_filter
from ...moe import route
from .. import pictures
from ..compare import Comparison, compare_tensors
from ..lab import Case, Lab, Mistake, Output
from .common import header, randn, tile_heads

# -- kv_step -------------------------------------------------------------------------------

KV_STUB = header("kv_step", "one generation step with a KV cache") + '''
import math

import torch
from torch import Tensor


def kv_step(cache_k: Tensor, cache_v: Tensor, k: Tensor, v: Tensor, q: Tensor, position: int) -> Tensor:
    """One generation step of one attention layer with a KV cache.

    cache_k, cache_v  (B, G, L, Dh)  room for L positions; 0 ... position - 1 hold the earlier
                                     tokens' keys and values, the rest is not yet written
    k, v              (B, G, 1, Dh)  the new token's key and value: write them at `position`,
                                     in place (the next step reads them there), nothing else
    q                 (B, H, 1, Dh)  the new token's query; H = G * n_rep query heads, query
                                     head h reads key/value head h // n_rep
    position          where the new token stands
    returns out (B, H, 1, Dh): softmax(q k^T / sqrt(Dh)) v over positions 0 ... position,
    the new token itself included
    """
    raise NotImplementedError
'''


def kv_reference(cache_k, cache_v, k, v, q, position):
    """minitx's cache write (LayerCache.update), then attention: the newest query needs no mask."""
    keys, values = LayerCache(cache_k, cache_v).update(k, v, position)     # (B, G, position + 1, Dh)
    return explicit_attention(q, keys, values)[0]                        # (B, H, 1, Dh)


def _attend(q, keys, values, divide_by=None, repeat=repeat_kv):
    n_rep = q.size(1) // keys.size(1)
    keys, values = repeat(keys, n_rep), repeat(values, n_rep)
    scores = q @ keys.transpose(-2, -1) / (math.sqrt(q.size(-1)) if divide_by is None else divide_by)
    return scores.softmax(-1) @ values


def _not_written(cache_k, cache_v, k, v, q, position):
    keys = torch.cat([cache_k[:, :, :position], k], dim=2)
    values = torch.cat([cache_v[:, :, :position], v], dim=2)
    return _attend(q, keys, values)


def _whole_cache(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position:position + 1], cache_v[:, :, position:position + 1] = k, v
    return _attend(q, cache_k, cache_v)


def _without_itself(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position:position + 1], cache_v[:, :, position:position + 1] = k, v
    if position == 0:
        return torch.zeros_like(q)
    return _attend(q, cache_k[:, :, :position], cache_v[:, :, :position])


def _written_one_later(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position + 1:position + 2], cache_v[:, :, position + 1:position + 2] = k, v
    return _attend(q, cache_k[:, :, :position + 2], cache_v[:, :, :position + 2])


def _kv_no_scale(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position:position + 1], cache_v[:, :, position:position + 1] = k, v
    return _attend(q, cache_k[:, :, :position + 1], cache_v[:, :, :position + 1], divide_by=1.0)


def _written(cache_k, cache_v, k, v, q, position, where=None, write_v=True, swapped=False):
    """k and v written at `where` (a slice of slots; `position` by default), then attention over 0 ... position."""
    where = slice(position, position + 1) if where is None else where
    cache_k[:, :, where] = v if swapped else k
    if write_v:
        cache_v[:, :, where] = k if swapped else v
    return cache_k[:, :, :position + 1], cache_v[:, :, :position + 1]


def _swapped(cache_k, cache_v, k, v, q, position):
    return _attend(q, *_written(cache_k, cache_v, k, v, q, position, swapped=True))


def _only_k_written(cache_k, cache_v, k, v, q, position):
    return _attend(q, *_written(cache_k, cache_v, k, v, q, position, write_v=False))


def _heads_tiled(cache_k, cache_v, k, v, q, position):
    return _attend(q, *_written(cache_k, cache_v, k, v, q, position), repeat=tile_heads)


def _softmax_over_the_query(cache_k, cache_v, k, v, q, position):
    _, values = _written(cache_k, cache_v, k, v, q, position)
    return repeat_kv(values, q.size(1) // values.size(1)).sum(2, keepdim=True)   # every weight 1


def _written_one_early(cache_k, cache_v, k, v, q, position):
    before = slice(position - 1, position) if position else slice(-1, None)     # position -1: the last slot
    _written(cache_k, cache_v, k, v, q, position, where=before)
    return _attend(q, cache_k[:, :, :position + 1], cache_v[:, :, :position + 1])


def _written_to_the_end(cache_k, cache_v, k, v, q, position):
    return _attend(q, *_written(cache_k, cache_v, k, v, q, position, where=slice(position, None)))


def _kv_scale_by_dh(cache_k, cache_v, k, v, q, position):
    return _attend(q, *_written(cache_k, cache_v, k, v, q, position), divide_by=q.size(-1))


def kv_cases() -> list[Case]:
    def case(label, B, G, H, L, Dh, position, seed, junk=False):
        cache_k, cache_v = randn(B, G, L, Dh, seed=seed), randn(B, G, L, Dh, seed=seed + 1)
        if not junk:                       # slots not yet written hold zeros, as in KVCache
            cache_k[:, :, position:], cache_v[:, :, position:] = 0.0, 0.0
        return Case(label, {"cache_k": cache_k, "cache_v": cache_v, "k": randn(B, G, 1, Dh, seed=seed + 2),
                            "v": randn(B, G, 1, Dh, seed=seed + 3), "q": randn(B, H, 1, Dh, seed=seed + 4),
                            "position": position},
                    {"B": B, "G": G, "H": H, "L": L, "Dh": Dh})

    return [
        case("position 3 of 8, 2 key/value heads for 4 query heads (B 3, Dh 6)", 3, 2, 4, 8, 6, 3, 0),
        case("the first token, position 0", 3, 2, 4, 8, 6, 0, 10),
        case("the last slot, position 7", 1, 2, 6, 8, 4, 7, 20),
        case("one key/value head for 4 query heads (multi-query attention)", 2, 1, 4, 6, 4, 2, 30),
        case("slots after position hold old values from an earlier text", 2, 3, 3, 9, 4, 4, 40, junk=True),
    ]


def kv_picture(case: Case, want, got) -> dict:
    return pictures.heatmap("the key cache of review 0, head 0, after the step", want[1][0, 0], got[1][0, 0],
                            "position", "dimension")


KV_STEP = Lab(
    name="kv_step", function="kv_step", title="A step with the KV cache", page="decoder",
    task="When a decoder writes, each step adds one token. Its key and value are written into the "
         "layer's cache at its position; its query then attends over everything the cache holds so "
         "far. No mask is needed: every key in the cache is at or before the new token.",
    stub=KV_STUB, reference=kv_reference, cases=kv_cases,
    outputs=(Output("out", "(B, H, 1, Dh)"), Output("cache_k", "(B, G, L, Dh)"), Output("cache_v", "(B, G, L, Dh)")),
    mutates=("cache_k", "cache_v"), answer=(LayerCache.update, kv_reference, explicit_attention),
    mistakes=(
        Mistake("The cache was not written: the next step would not find this token's key and value. Write "
                "them in place: `cache_k[:, :, position] = k[:, :, 0]` (and the same for v).", _not_written, ("cat",)),
        Mistake("The query attended over all L slots, the ones after `position` too, which hold nothing yet "
                "(or an earlier text): use positions 0 ... position, `cache_k[:, :, :position + 1]`.",
                _whole_cache, ("write:cache_k",)),
        Mistake("The new token did not attend to itself: positions 0 ... position, inclusive.", _without_itself),
        Mistake("k and v were written one slot too late, at position + 1.", _written_one_later, ("write:cache_k",)),
        Mistake("No 1/√Dh: divide the scores by math.sqrt(Dh) before the softmax.", _kv_no_scale, ("@", "matmul")),
        Mistake("k went into the value cache and v into the key cache: `cache_k[:, :, position] = k[:, :, 0]`, "
                "`cache_v[:, :, position] = v[:, :, 0]`.", _swapped, ("write:cache_k",)),
        Mistake("Only the key cache was written: the value cache needs the new value too, "
                "`cache_v[:, :, position] = v[:, :, 0]`.", _only_k_written, ("write:cache_k",)),
        Mistake("Query head h read key/value head h % G (`repeat` tiles the heads): it reads h // n_rep, so each "
                "key/value head is repeated in place (`repeat_interleave` on dim 1).", _heads_tiled, ("repeat",)),
        Mistake("The softmax ran over the query's dimension (dim -2, of size 1), so every weight is 1: the "
                "weights run over the positions, softmax(dim=-1).", _softmax_over_the_query, ("softmax",)),
        Mistake("k and v were written one slot too early, at position - 1: the new token stands at `position`.",
                _written_one_early, ("write:cache_k",)),
        Mistake("k and v were written into every slot from `position` on (`cache_k[:, :, position:] = k` "
                "broadcasts): write the one slot, `cache_k[:, :, position] = k[:, :, 0]`.", _written_to_the_end,
                ("write:cache_k",)),
        Mistake("The scores were divided by Dh, not by its square root: math.sqrt(Dh).", _kv_scale_by_dh, ("/",)),
    ),
    rtol=1e-4, atol=1e-5, picture=kv_picture,
    hints=(
        "Write first: `cache_k[:, :, position] = k[:, :, 0]`, the same for v. Then "
        "`keys = cache_k[:, :, :position + 1]`, (B, G, position + 1, Dh).",
        "G key/value heads serve H query heads: repeat each one H // G times on dim 1 "
        "(`repeat_interleave`), as in the repeat_kv lab.",
        "Then attention as usual: `(q @ keys.transpose(-2, -1) / math.sqrt(Dh)).softmax(-1) @ values`.",
    ),
)

# -- top_p ---------------------------------------------------------------------------------

TOP_P_STUB = header("top_p", "the nucleus (top-p) filter") + '''
import torch
from torch import Tensor


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the most likely tokens whose probabilities, from the most likely down, first reach p;
    set every other logit to -inf (sampling then never picks them).

    logits  (..., V)   any number of leading dimensions; each row is filtered on its own
    p       from 0 to 1: the most likely token is always kept (p = 0 keeps only it), p = 1 keeps all
    returns (..., V): the kept logits as they were, the others -inf; logits is left as it was

    A token is kept when the tokens more likely than it have less than p between them: the
    token that crosses p is kept. Of equally likely tokens, either may be kept.
    """
    raise NotImplementedError
'''


def top_p_reference(logits, p):
    return allowed_logits(logits, top_p=p)


def _nucleus_drop(logits, p, probs=None, at_p=True, keep_crossing=True, keep_best=True, unsort=True,
                  ascending=False):
    """The tokens top-p drops, in vocabulary order, with one thing changed: `probs` made otherwise than
    logits.softmax(-1), a token at exactly p kept (`at_p` False), the crossing token dropped, the best
    one too, the flags left in sorted order, or the least likely sorted first."""
    probs = logits.softmax(-1) if probs is None else probs
    probs, order = probs.sort(dim=-1, descending=not ascending, stable=True)
    mass = probs.cumsum(-1)
    drop = (mass - probs >= p if at_p else mass - probs > p) if keep_crossing else mass > p
    if keep_best:
        drop[..., 0] = False
    return drop.scatter(-1, order, drop) if unsort else drop


def _nucleus(logits, p, **changed):
    return logits.masked_fill(_nucleus_drop(logits, p, **changed), float("-inf"))


def _naive_softmax_nucleus(logits, p):
    exp = logits.exp()
    return _nucleus(logits, p, probs=exp / exp.sum(-1, keepdim=True))


def _sorted_logits_returned(logits, p):
    ordered, order = logits.sort(dim=-1, descending=True, stable=True)
    return ordered.masked_fill(_nucleus_drop(logits, p).gather(-1, order), float("-inf"))


def top_p_cases() -> list[Case]:
    def case(label, logits, p):
        return Case(label, {"logits": logits, "p": p}, dict(zip(("B", "T"), logits.shape[:-1]), V=logits.size(-1)))

    peaked = randn(12, seed=1, scale=2.0)
    return [
        case("one row of 10 logits, p 0.9", randn(10, seed=0, scale=2.0), 0.9),
        case("rows (B 2, T 3) of 12, p 0.5: each row on its own", randn(2, 3, 12, seed=2, scale=2.0), 0.5),
        case("p 0: only the most likely token", peaked, 0.0),
        case("p 1: every token", peaked, 1.0),
        case("logits + 100 (a softmax without the max taken off overflows)", randn(2, 9, seed=3) + 100.0, 0.8),
        case("equally likely tokens (ties)", torch.tensor([[2.0, 1.0, 2.0, 1.0, 0.0, 2.0, 1.0, -1.0]]), 0.6),
        case("one token holds most of the mass, p 0.3", torch.tensor([6.0, 1.0, 0.5, 0.0, -1.0, 0.2]), 0.3),
        case("the mass before a token is exactly p: four tokens of 0.25 each, p 0.5 keeps two",
             torch.zeros(4), 0.5),
        case("the mass before the second token is 0.49993, just under p 0.5 (float16 rounds it to 0.5)",
             torch.tensor([0.49993, 0.25, 0.15, 0.10007]).log(), 0.5),
    ]


def top_p_compare(spec, want, got) -> Comparison | None:
    """Equal, or equal up to which of equally likely tokens were kept: each row keeps the same
    number of logits with the same values, each at its own token."""
    exact = compare_tensors(want, got, 0.0, 0.0, "the filtered logits")
    if exact.same:
        return exact
    kept_same = compare_tensors(want.sort(-1).values, got.sort(-1).values, 0.0, 0.0).same
    both_kept = want.isfinite() & got.isfinite()                   # a kept token keeps its own logit
    if kept_same and bool((want[both_kept] == got[both_kept]).all()):
        return Comparison(True, False, 0.0, "the filtered logits keep the same logits as minitx's; of equally "
                                            "likely tokens, yours kept others.")
    return exact


def top_p_picture(case: Case, want, got) -> dict:
    logits = case.args["logits"].reshape(-1, case.args["logits"].size(-1))[0]
    probs = logits.softmax(-1)
    kept = lambda out: (probs * out.reshape(-1, out.size(-1))[0].isfinite()).tolist()   # noqa: E731
    return pictures.bars(f"row 0: the probability of each kept token (p = {case.args['p']})",
                         list(range(logits.numel())), kept(want[0]), kept(got[0]), "token", "probability kept")


TOP_P = Lab(
    name="top_p", function="top_p_filter", title="Top-p (nucleus) filtering", page="decoder",
    task="Sampling from every token lets in nonsense from the long tail. Top-p sampling keeps the "
         "smallest set of most likely tokens that together reach probability p, and samples only "
         "from those.",
    stub=TOP_P_STUB, reference=top_p_reference, cases=top_p_cases,
    outputs=(Output("the filtered logits", "(..., V)"),), answer=(top_p_filter, allowed_logits),
    mistakes=(
        Mistake("The probabilities were summed in float16: it rounds 0.49993 to 0.5, and a token just under p "
                "is dropped. Keep them in float32, as softmax gives them.",
                lambda logits, p: _nucleus(logits, p, probs=logits.softmax(-1).half()), ("half",)),
        Mistake("The token that crosses p was dropped: keep a token while the probability *before* it is "
                "below p (`cumsum - probs < p`), so that what is kept reaches p.",
                lambda logits, p: _nucleus(logits, p, keep_crossing=False), ("cumsum",)),
        Mistake("A token was kept where the mass before it equals p exactly: the kept ones already reach p "
                "there, so drop where the mass before is at least p (`>= p`, not `> p`).",
                lambda logits, p: _nucleus(logits, p, at_p=False), ("cumsum",)),
        Mistake("Every token was dropped at p = 0: the most likely token always stays (never drop the first "
                "in sorted order).", lambda logits, p: _nucleus(logits, p, keep_best=False)),
        Mistake("The filter was applied in sorted order: map the drop flags back to the vocabulary's order "
                "(`drop.scatter(-1, order, drop)`, order from the sort).",
                lambda logits, p: _nucleus(logits, p, unsort=False)),
        Mistake("The running sum was over logits, not probabilities: take the softmax first.",
                lambda logits, p: _nucleus(logits, p, probs=logits)),
        Mistake("exp overflowed: exp(logits) is inf for logits near 100, and inf / inf is NaN. Use "
                "`logits.softmax(-1)`, which takes each row's max off first.", _naive_softmax_nucleus, ("exp",)),
        Mistake("The dropped logits were set to 0, not -inf: a logit of 0 still has probability exp(0) / Z, so "
                "sampling could pick it. `logits.masked_fill(drop, float('-inf'))`.",
                lambda logits, p: logits.masked_fill(_nucleus_drop(logits, p), 0.0), ("masked_fill", "where")),
        Mistake("Probabilities came back, not logits: keep the logits as they were and set the dropped ones to -inf.",
                lambda logits, p: logits.softmax(-1).masked_fill(_nucleus_drop(logits, p), float("-inf")),
                ("masked_fill", "where")),
        Mistake("The tokens were sorted least likely first: the nucleus is the most likely tokens, "
                "`sort(descending=True)`.", lambda logits, p: _nucleus(logits, p, ascending=True),
                ("sort", "argsort")),
        Mistake("The softmax ran over dim 0, across the rows: each row is one distribution over the vocabulary, "
                "`softmax(dim=-1)`.", lambda logits, p: _nucleus(logits, p, probs=logits.softmax(0)),
                ("softmax",)),
        Mistake("The sorted logits came back: the filtered logits stay in the vocabulary's order, token i at "
                "index i.", _sorted_logits_returned, ("sort",)),
    ),
    rtol=0.0, atol=0.0, compare=top_p_compare, picture=top_p_picture,
    hints=(
        "`probs, order = logits.softmax(-1).sort(dim=-1, descending=True)`: most likely first, and "
        "where each came from.",
        "The mass before each token: `probs.cumsum(-1) - probs`. Drop where it is at least p, but never "
        "the first token: `drop[..., 0] = False`.",
        "Back to vocabulary order: `drop = drop.scatter(-1, order, drop)`; then "
        "`logits.masked_fill(drop, float('-inf'))`.",
    ),
)

# -- moe_route -----------------------------------------------------------------------------

MOE_STUB = header("moe_route", "routing tokens to experts") + '''
import torch
import torch.nn.functional as F
from torch import Tensor


def moe_route(probs: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Send each token to its k best experts, and measure how evenly the load is spread.

    probs  (N, E)  the router's probability of every expert, per token (each row sums to 1)
    k      experts per token
    returns weights  (N, k): the chosen experts' probabilities renormalised to sum to 1, best first
            experts  (N, k), long: which experts, best first
            aux_loss a 0-d tensor, E * sum_e f_e * P_e: f_e the share of the N * k choices that went
                     to expert e, P_e the mean of probs[:, e] (1 when the load is even)
    """
    raise NotImplementedError
'''


def _route(probs, k, renormalise="sum", scale_by_e=True, per_choice=True, largest=True):
    weights, chosen = probs.topk(k, dim=-1, largest=largest)
    if renormalise == "sum":
        weights = weights / weights.sum(-1, keepdim=True)
    elif renormalise == "softmax":
        weights = weights.softmax(-1)
    E = probs.size(-1)
    routed = F.one_hot(chosen, E).sum(1).float().mean(0) / (k if per_choice else 1)
    aux = (routed * probs.mean(0)).sum() * (E if scale_by_e else 1)
    return weights, chosen, aux


def _aux(probs, chosen, share, mean_probs=None):
    """E * sum_e f_e * P_e, with f_e from `share` (N, k, E one-hot choices -> (E,)) and P_e minitx's mean."""
    E = probs.size(-1)
    f = share(F.one_hot(chosen, E).float())
    return E * (f * (probs.mean(0) if mean_probs is None else mean_probs)).sum()


def _aux_from_counts(probs, k):
    weights, chosen, _ = _route(probs, k)
    return weights, chosen, _aux(probs, chosen, lambda hot: hot.sum((0, 1)))


def _aux_from_weights(probs, k):
    weights, chosen, _ = _route(probs, k)
    kept = torch.zeros_like(probs).scatter(-1, chosen, weights)            # (N, E): the renormalised weights
    return weights, chosen, _aux(probs, chosen, lambda hot: hot.sum(1).mean(0) / k, kept.mean(0))


def _aux_first_choice(probs, k):
    weights, chosen, _ = _route(probs, k)
    return weights, chosen, _aux(probs, chosen, lambda hot: hot[:, 0].mean(0))


def _aux_as_a_float(probs, k):
    weights, chosen, aux = _route(probs, k)
    return weights, chosen, aux.item()


def _experts_choose_tokens(probs, k):
    weights, chosen = probs.topk(k, dim=0)                                  # (k, E): tokens per expert
    return weights / weights.sum(0, keepdim=True), chosen, _route(probs, k)[2]


def _worst_first(probs, k):
    weights, chosen, aux = _route(probs, k)
    return weights.flip(-1), chosen.flip(-1), aux


def moe_cases() -> list[Case]:
    def case(label, logits, k):
        N, E = logits.shape
        return Case(label, {"probs": logits.softmax(-1), "k": k}, {"N": N, "E": E, "k": k})

    skewed = randn(8, 4, seed=3)
    skewed[:, 0] += 3.0                               # everybody's favourite expert
    tie = randn(5, 6, seed=4)
    tie[2, 1] = tie[2, 4] = tie[2].max() + 1.0        # two best experts, equally likely
    return [
        case("6 tokens, 4 experts, k 2", randn(6, 4, seed=0, scale=2.0), 2),
        case("k 1 (the Switch Transformer's one expert per token)", randn(7, 5, seed=1, scale=2.0), 1),
        case("k = E: every expert, weights are the probabilities", randn(3, 3, seed=2), 3),
        case("the load piles up on expert 0", skewed, 2),
        case("two experts equally likely for token 2", tie, 2),
    ]


def moe_compare(spec, want, got) -> Comparison | None:
    """Equal, or, for the experts, equal up to the order of equally likely ones: the weights come first
    and are compared in their order, best first, so only experts of equal weight may change places."""
    exact = compare_tensors(want, got, 1e-5, 1e-6, f"`{spec.name}`")
    if exact.same or spec.name != "experts" or want.dim() != 2:
        return exact
    if compare_tensors(want.sort(-1).values, got.sort(-1).values, 1e-5, 1e-6).same:
        return Comparison(True, False, exact.largest, f"`{spec.name}` has minitx's values, equally likely "
                                                      "experts in another order.")
    return exact


def moe_picture(case: Case, want, got) -> dict:
    E = case.args["probs"].size(-1)
    load = lambda chosen: torch.bincount(chosen.flatten().long().clamp(0, E - 1), minlength=E).tolist()  # noqa: E731
    return pictures.bars("routing choices per expert", list(range(E)), load(want[1]), load(got[1]), "expert",
                         "tokens routed")


MOE_ROUTE = Lab(
    name="moe_route", function="moe_route", title="Routing in a mixture of experts", page="decoder",
    task="A mixture-of-experts layer sends each token to a few of its feed-forward networks. The "
         "router gives every expert a probability; each token goes to its k best, best first, their "
         "outputs mixed by the renormalised probabilities. The load-balancing loss keeps the router "
         "from sending everything to a favourite.",
    stub=MOE_STUB, reference=route, cases=moe_cases,
    outputs=(Output("weights", "(N, k)"), Output("experts", "(N, k)", dtype=torch.long),
             Output("aux_loss", "()")),
    answer=(route,),
    mistakes=(
        Mistake("The weights were not renormalised: divide the k chosen probabilities by their sum, so each "
                "token's weights add up to 1.", lambda probs, k: _route(probs, k, renormalise=None)),
        Mistake("A softmax of the chosen probabilities is not their renormalisation: divide them by their sum.",
                lambda probs, k: _route(probs, k, renormalise="softmax")),
        Mistake("The load-balancing loss misses the factor E (the number of experts): it should be 1 when the "
                "load is even.", lambda probs, k: _route(probs, k, scale_by_e=False)),
        Mistake("f_e should be the share of all N * k choices; yours divides the counts by N only "
                "(divide by k as well).", lambda probs, k: _route(probs, k, per_choice=False)),
        Mistake("The right experts, worst first: each token's experts and weights go best first, as `topk` "
                "returns them (the model reads the first as the token's favourite).", _worst_first),
        Mistake("These are the k *least* likely experts: `topk` keeps the largest by default.",
                lambda probs, k: _route(probs, k, largest=False), ("topk",)),
        Mistake("f_e counts the choices: it is their share, the count divided by all N * k choices.",
                _aux_from_counts, ("one_hot", "bincount")),
        Mistake("P_e came from the renormalised weights of the chosen experts: it is the router's mean probability "
                "over all tokens, `probs.mean(0)`, which reaches every expert's gradient.", _aux_from_weights,
                ("mean",)),
        Mistake("f_e counted only each token's first choice (the Switch Transformer's k = 1): with k experts per "
                "token every one of the N * k choices counts.", _aux_first_choice, ("one_hot", "bincount")),
        Mistake("aux_loss came back as a Python float (`.item()`): keep the 0-d tensor, which training "
                "backpropagates through.", _aux_as_a_float, ("item",)),
        Mistake("topk ran over dim 0, the tokens: each expert chose its k tokens (expert-choice routing). Here each "
                "token chooses its k experts, `topk(k, dim=-1)`.", _experts_choose_tokens, ("topk",)),
    ),
    rtol=1e-5, atol=1e-6, compare=moe_compare, picture=moe_picture,
    hints=(
        "`weights, experts = probs.topk(k, dim=-1)` gives both, best first; divide weights by "
        "`weights.sum(-1, keepdim=True)`.",
        "f: `F.one_hot(experts, E)` is (N, k, E); sum over k, mean over N, divide by k: each expert's share.",
        "P: `probs.mean(0)`, (E,). aux_loss = `E * (f * P).sum()`.",
    ),
)
