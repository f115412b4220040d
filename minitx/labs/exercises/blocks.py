"""Labs of the encoder page: RMSNorm and the pre-norm wiring of a transformer block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...block import pre_norm, rms_norm
from .. import pictures
from ..lab import Case, Lab, Mistake, Output
from .common import header, randn

# -- rms_norm ------------------------------------------------------------------------------

RMS_STUB = header("rms_norm", "RMSNorm") + '''
import torch
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Scale each vector to a root mean square of 1, then each dimension by a learned gain.

    x       (..., D)   any number of leading dimensions; each vector of D is normalised alone
    weight  (D,)       the gain
    eps     a small number added to the mean of the squares, inside the square root,
            so that a vector of zeros stays zeros
    returns (..., D):  x / sqrt(mean(x^2) + eps) * weight
    """
    raise NotImplementedError
'''


def _rms(x, eps_inside=True, eps=1e-6, subtract_mean=False, reduce="mean", dim=-1, root=True):
    if subtract_mean:
        x = x - x.mean(-1, keepdim=True)
    square = x.pow(2).mean(dim, keepdim=True) if reduce == "mean" else x.pow(2).sum(dim, keepdim=True)
    if not root:
        return x / (square + eps)
    return x / (square + eps).sqrt() if eps_inside else x / (square.sqrt() + eps)


def rms_cases() -> list[Case]:
    def case(label, shape, eps, seed, scale=1.0, zero_row=False, gain=True):
        x = randn(*shape, seed=seed, scale=scale)
        if zero_row:
            x.view(-1, shape[-1])[1] = 0.0
        D = shape[-1]
        weight = randn(D, seed=seed + 1) * 0.5 + 1.0 if gain else torch.ones(D)
        dims = dict(zip(("B", "T", "H")[: len(shape) - 1], shape[:-1]), D=D)
        return Case(label, {"x": x, "weight": weight, "eps": eps}, dims)

    return [
        case("x (B 2, T 3, D 8), eps 1e-6", (2, 3, 8), 1e-6, 0),
        case("a row of zeros: eps keeps it at 0", (4, 6), 1e-5, 1, zero_row=True),
        case("small values (about 0.001) and eps 0.01: where eps goes matters", (3, 5), 1e-2, 2, scale=1e-3),
        case("x (B 2, T 2, H 3, D 4): more leading dimensions", (2, 2, 3, 4), 1e-6, 3),
        case("large values (about 1000)", (2, 7), 1e-6, 4, scale=1e3),
    ]


def rms_picture(case: Case, want, got) -> dict:
    D = want[0].size(-1)
    return pictures.heatmap("every vector, one per row", want[0].reshape(-1, D), got[0].reshape(-1, D),
                            "vector", "dimension")


def _weighted(fn):
    return lambda x, weight, eps: fn(x, weight, eps) * weight


RMS_NORM = Lab(
    name="rms_norm", function="rms_norm", title="RMSNorm", page="encoder",
    task="Before each branch of a pre-norm block, every token's vector is brought to a standard "
         "size. RMSNorm (LLaMA, Mistral) divides by the root mean square; unlike LayerNorm it "
         "subtracts no mean and adds no bias.",
    stub=RMS_STUB, reference=rms_norm, cases=rms_cases,
    outputs=(Output("the result", "(..., D)"),), answer=(rms_norm,),
    mistakes=(
        Mistake("eps is outside the square root, sqrt(mean(x²)) + eps; it belongs inside, "
                "sqrt(mean(x²) + eps). The two differ when the vector is small.",
                _weighted(lambda x, w, eps: _rms(x, eps_inside=False, eps=eps)), ("sqrt", "rsqrt")),
        Mistake("The mean was subtracted first: that is LayerNorm. RMSNorm only divides by the root mean square.",
                _weighted(lambda x, w, eps: _rms(x, eps=eps, subtract_mean=True))),
        Mistake("The squares were summed, not averaged: the mean over the D dimensions (`.mean(-1)`).",
                _weighted(lambda x, w, eps: _rms(x, eps=eps, reduce="sum")), ("sum",)),
        Mistake("x was divided by the mean of the squares, not by its square root.",
                _weighted(lambda x, w, eps: _rms(x, eps=eps, root=False)), ("/",)),
        Mistake("The gain `weight` was not applied: multiply the normalised x by it.",
                lambda x, w, eps: _rms(x, eps=eps)),
        Mistake("NaN for a vector of zeros: 0 / sqrt(0) is 0 / 0. Add eps inside the square root.",
                _weighted(lambda x, w, eps: _rms(x, eps=0.0))),
        Mistake("The mean ran over the wrong dimension: each vector is normalised over its own D values, "
                "the last dimension (`dim=-1`).", _weighted(lambda x, w, eps: _rms(x, eps=eps, dim=0)), ("mean",)),
        Mistake("The gain was added, not multiplied: x / rms * weight.", lambda x, w, eps: _rms(x, eps=eps) + w,
                ("+",)),
        Mistake("The gain was applied as (1 + weight), as Gemma stores it: minitx's weight is the gain itself, "
                "x / rms * weight.", lambda x, w, eps: _rms(x, eps=eps) * (1 + w), ("+",)),
        Mistake("The variance (`x.var`) is not the mean of the squares: it subtracts the mean first (and "
                "divides by D - 1). Use `x.pow(2).mean(-1, keepdim=True)`.",
                _weighted(lambda x, w, eps: x / (x.var(-1, keepdim=True) + eps).sqrt()), ("var", "std")),
        Mistake("The mean of |x| is not the root mean square: square, average, then take the square root.",
                _weighted(lambda x, w, eps: x / (x.abs().mean(-1, keepdim=True) + eps)), ("abs",)),
        Mistake("One mean over the whole tensor: each vector is normalised by its own root mean square, "
                "`mean(-1, keepdim=True)`.", _weighted(lambda x, w, eps: x / (x.pow(2).mean() + eps).sqrt()),
                ("mean",)),
        Mistake("The mean was squared, (mean x)², not the squares averaged, mean(x²): square first.",
                _weighted(lambda x, w, eps: x / (x.mean(-1, keepdim=True).pow(2) + eps).sqrt()), ("mean",)),
        Mistake("The gain went in before the norm, so it was normalised away: normalise x first, then multiply "
                "by weight.", lambda x, w, eps: _rms(x * w, eps=eps), ("*",)),
    ),
    rtol=1e-4, atol=1e-5, picture=rms_picture,
    hints=(
        "The mean of the squares over the last dimension: `x.pow(2).mean(-1, keepdim=True)`, (..., 1).",
        "`torch.rsqrt(ms + eps)` is 1 / sqrt(ms + eps); keepdim=True lets it broadcast over D.",
        "`x * torch.rsqrt(ms + eps) * weight`.",
    ),
)

# -- block ---------------------------------------------------------------------------------

BLOCK_STUB = header("block", "the pre-norm residual wiring of a transformer block") + '''
from torch import Tensor


def block(x: Tensor, attention_norm, attention, ffn_norm, feed_forward) -> Tensor:
    """One pre-norm transformer block: each branch reads a normalised copy of the residual
    stream x and adds what it finds back to x. The stream itself is never normalised.

    x               (B, T, D)   the residual stream
    attention_norm  (B, T, D) -> (B, T, D), the norm before attention
    attention       (B, T, D) -> (B, T, D), tokens look at each other
    ffn_norm        (B, T, D) -> (B, T, D), the norm before the feed-forward network
    feed_forward    (B, T, D) -> (B, T, D), each token thinks alone
    returns (B, T, D)
    """
    raise NotImplementedError
'''


def block_reference(x, attention_norm, attention, ffn_norm, feed_forward):
    """minitx.block.pre_norm, the wiring every pre-norm TransformerBlock calls."""
    return pre_norm(x, attention_norm, attention, ffn_norm, feed_forward)


def _post_norm(x, attention_norm, attention, ffn_norm, feed_forward):
    x = attention_norm(x + attention(x))
    return ffn_norm(x + feed_forward(x))


def _no_attention_residual(x, attention_norm, attention, ffn_norm, feed_forward):
    x = attention(attention_norm(x))
    return x + feed_forward(ffn_norm(x))


def _stream_normalised(x, attention_norm, attention, ffn_norm, feed_forward):
    x = attention_norm(x)
    x = x + attention(x)
    x = ffn_norm(x)
    return x + feed_forward(x)


def _parallel(x, attention_norm, attention, ffn_norm, feed_forward):
    return x + attention(attention_norm(x)) + feed_forward(ffn_norm(x))


def _norms_swapped(x, attention_norm, attention, ffn_norm, feed_forward):
    return block_reference(x, ffn_norm, attention, attention_norm, feed_forward)


def _ffn_without_norm(x, attention_norm, attention, ffn_norm, feed_forward):
    x = x + attention(attention_norm(x))
    return x + feed_forward(x)


def _feed_forward_first(x, attention_norm, attention, ffn_norm, feed_forward):
    x = x + feed_forward(ffn_norm(x))
    return x + attention(attention_norm(x))


def _no_feed_forward(x, attention_norm, attention, ffn_norm, feed_forward):
    return x + attention(attention_norm(x))


def _feed_forward_replaces(x, attention_norm, attention, ffn_norm, feed_forward):
    x = x + attention(attention_norm(x))
    return feed_forward(ffn_norm(x))


def _final_norm(x, attention_norm, attention, ffn_norm, feed_forward):
    return ffn_norm(block_reference(x, attention_norm, attention, ffn_norm, feed_forward))


def _attention_without_norm(x, attention_norm, attention, ffn_norm, feed_forward):
    x = x + attention(x)
    return x + feed_forward(ffn_norm(x))


def _feed_forward_reads_the_branch(x, attention_norm, attention, ffn_norm, feed_forward):
    a = attention(attention_norm(x))
    return x + a + feed_forward(ffn_norm(a))


def block_parts(D: int, seed: int):
    """Four different functions of the right shapes: two norms with their own gains, an
    attention that mixes tokens, a two-layer feed-forward network."""
    g1, b1, g2, b2 = (randn(D, seed=seed + i) * 0.3 + (1.0 if i % 2 == 0 else 0.0) for i in range(4))
    w_attention = randn(D, D, seed=seed + 4, scale=D ** -0.5)
    w_up, w_down = randn(D, 2 * D, seed=seed + 5, scale=D ** -0.5), randn(2 * D, D, seed=seed + 6, scale=(2 * D) ** -0.5)

    def attention_norm(h):
        return F.layer_norm(h, (D,)) * g1 + b1

    def ffn_norm(h):
        return F.layer_norm(h, (D,)) * g2 + b2

    def attention(h):
        weights = (h @ h.transpose(-2, -1) / math.sqrt(D)).softmax(-1)
        return weights @ h @ w_attention

    def feed_forward(h):
        return F.relu(h @ w_up) @ w_down

    return {"attention_norm": attention_norm, "attention": attention, "ffn_norm": ffn_norm,
            "feed_forward": feed_forward}


def block_cases() -> list[Case]:
    def case(label, B, T, D, seed, scale=1.0):
        return Case(label, {"x": randn(B, T, D, seed=seed, scale=scale), **block_parts(D, seed + 10)},
                    {"B": B, "T": T, "D": D})

    return [case("x (B 2, T 4, D 6), random parts", 2, 4, 6, 0),
            case("a stream of large values (about 20)", 1, 3, 8, 1, scale=20.0),
            case("B 3, T 5, D 4", 3, 5, 4, 2)]


def block_picture(case: Case, want, got) -> dict:
    return pictures.heatmap("the output of review 0", want[0][0], got[0][0], "token", "dimension")


BLOCK = Lab(
    name="block", function="block", title="The pre-norm block", page="encoder",
    task="Wire one transformer block from its parts. In a pre-norm block (GPT-2 onwards) each "
         "branch reads a normalised copy of the residual stream and adds its output back: the "
         "stream carries every layer's contribution unnormalised, which trains stably when deep.",
    stub=BLOCK_STUB, reference=block_reference, cases=block_cases,
    outputs=(Output("the new stream", "(B, T, D)"),), answer=(pre_norm,),
    mistakes=(
        Mistake("That is the post-norm block of the 2017 paper, norm(x + branch(x)): in a pre-norm block the "
                "norm comes first, on the branch's input, x + branch(norm(x)).", _post_norm),
        Mistake("The attention branch replaced the residual stream instead of adding to it: "
                "x = x + attention(attention_norm(x)).", _no_attention_residual),
        Mistake("The normalised x replaced the residual stream: normalise a copy for the branch and add "
                "the branch's output to the unnormalised x.", _stream_normalised),
        Mistake("Both branches read the same input (a parallel block, as in GPT-J): here the feed-forward "
                "network reads the stream after attention's output has been added.", _parallel),
        Mistake("attention_norm and ffn_norm are swapped: attention reads attention_norm(x).", _norms_swapped),
        Mistake("The feed-forward branch read x without ffn_norm: x = x + feed_forward(ffn_norm(x)).",
                _ffn_without_norm, ("feed_forward",)),
        Mistake("The branches ran in the wrong order: attention first (tokens gather from each other), then the "
                "feed-forward network on what they gathered.", _feed_forward_first, ("feed_forward",)),
        Mistake("The feed-forward branch is missing: after attention, x = x + feed_forward(ffn_norm(x)).",
                _no_feed_forward, ("attention",)),
        Mistake("The feed-forward branch replaced the residual stream instead of adding to it: "
                "x = x + feed_forward(ffn_norm(x)).", _feed_forward_replaces, ("feed_forward",)),
        Mistake("A norm was applied to the block's output: in a pre-norm block the stream leaves unnormalised "
                "(the model's one final norm comes after the last block).", _final_norm, ("ffn_norm",)),
        Mistake("The attention branch read x without attention_norm: x = x + attention(attention_norm(x)).",
                _attention_without_norm, ("attention",)),
        Mistake("The feed-forward network read attention's output alone, not the stream it was added to: "
                "x = x + attention(...) first, then feed_forward(ffn_norm(x)).", _feed_forward_reads_the_branch,
                ("feed_forward",)),
    ),
    rtol=1e-4, atol=1e-5, picture=block_picture,
    hints=(
        "Two lines, one per branch, each of the form `x = x + branch(norm(x))`.",
        "Attention first, then the feed-forward network, which reads the stream attention has just added to.",
        "`x = x + attention(attention_norm(x))`, then the same with ffn_norm and feed_forward.",
    ),
)
