"""When a lab's check fails: what the difference looks like for mistakes no lab lists (each pattern
on a function built to have it), the learner's own line quoted, every case listed, and right
answers written in other styles still passing."""

from __future__ import annotations

import math

import pytest
import torch

from minitx.labs import get_lab
from minitx.labs.checking import check
from minitx.labs.difference import explain
from minitx.labs.lab import Case


def checked(name: str, fn):
    """The check of a function built in the test (it runs here, as the lab worker's process would run it)."""
    return check(get_lab(name), "# built by the test\n", "built.py", load=lambda *_: fn)


def reference(name: str):
    return get_lab(name).reference


def test_a_constant_factor_is_named_with_the_size_it_equals():
    report = checked("rms_norm", lambda x, w, eps: reference("rms_norm")(x, w, eps) * math.sqrt(x.size(-1)))
    assert "times 2.828 (= √D, with D = 8)" in report.title, report.title


def test_a_flipped_sign_and_a_constant_added_are_named():
    assert "sign flipped" in checked("rope", lambda x, start: -reference("rope")(x, start)).title
    assert "plus 0.25" in checked("rms_norm", lambda x, w, eps: reference("rms_norm")(x, w, eps) + 0.25).title


def test_two_axes_swapped_are_named_by_their_letters():
    case = Case("square", {"x": torch.randn(2, 4, 4)}, {"B": 2, "T": 4, "D": 4})
    want = torch.randn(2, 4, 4)
    text = explain(want, want.transpose(1, 2), "(B, T, D)", case, 1e-4, 1e-5, lambda args: None)
    assert "two axes swapped, T and D" in text, text


def test_a_table_shifted_by_one_position_is_named():
    def shifted(max_len, d_model):
        table = reference("sinusoidal")(max_len + 1, d_model)
        return torch.cat([table[:1], table[:-2]])                    # row p holds position p - 1
    report = checked("sinusoidal", shifted)
    assert "shifted by one along max_len" in report.title and "t - 1" in report.title, report.title


def test_a_reversed_axis_is_named():
    report = checked("rms_norm", lambda x, w, eps: reference("rms_norm")(x, w, eps).flip(-1))
    assert "reversed along D" in report.title, report.title


def test_some_heads_only_and_one_half_of_the_dimensions_only_are_named():
    def two_heads_wrong(q, k, v, mask=None):
        out, weights = reference("attention")(q, k, v, mask)
        out = out.clone()
        out[:, 1:3] *= 1.1
        return out, weights
    report = checked("attention", two_heads_wrong)
    assert "only heads 1 and 2 of 3" in report.title and "h // n_rep" in report.title, report.title

    def second_half_wrong(x, start):
        out = reference("rope")(x, start).clone()
        out[..., x.size(-1) // 2:] += 0.3 * out[..., : x.size(-1) // 2]
        return out
    report = checked("rope", second_half_wrong)
    assert "only the second half of Dh" in report.title, report.title


def test_a_difference_only_where_values_are_small_points_at_eps():
    x = torch.randn(6, 8) * torch.tensor([1e-3, 1e-3, 1.0, 1.0, 1.0, 1.0])[:, None]   # two small rows
    case = Case("mixed", {"x": x, "weight": torch.ones(8), "eps": 1e-6}, {"N": 6, "D": 8})
    rms = reference("rms_norm")
    text = explain(rms(x, torch.ones(8), 1e-6), rms(x, torch.ones(8), 1e-4), "(..., D)", case, 1e-4, 1e-5,
                   lambda args: None)
    assert "Only the vectors whose values are small differ" in text and "eps" in text, text


def test_a_difference_only_where_the_mask_hides_is_named():
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool).tril()
    want = torch.rand(2, 2, 3, 3)
    got = want.masked_fill(~mask, 0.5)
    case = Case("causal", {"mask": mask}, {"B": 2, "H": 2, "T": 3, "S": 3})
    text = explain(want, got, "(B, H, T, S)", case, 1e-4, 1e-5, lambda args: None)
    assert "only where `mask` is False" in text, text

    padding = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    padding[1, ..., 3:] = False                                   # review 1 ends in two [PAD]
    out = torch.randn(2, 3, 5, 4)
    wrong = out.clone()
    wrong[1] += 0.5
    case = Case("padding", {"mask": padding}, {"B": 2, "H": 3, "T": 5, "S": 5, "Dh": 4})
    text = explain(out, wrong, "(B, H, T, Dh)", case, 1e-4, 1e-5, lambda args: None)
    assert "only batch row 1 of 2 (the ones with [PAD] positions)" in text, text


def test_an_answer_to_a_neighbouring_input_is_named():
    report = checked("top_p", lambda logits, p: reference("top_p")(logits, 0.0))
    assert "minitx's answer for p = 0.0 (this case has p = 0.9)" in report.title, report.title


def test_what_separates_the_cases_that_match_from_those_that_do_not_is_named():
    def wrong_when_several_tokens(q, k, v, mask=None):
        out, weights = reference("attention")(q, k, v, mask)
        if q.size(-2) > 1:
            out = out + 0.01 * torch.sin(torch.arange(out.numel(), dtype=out.dtype)).reshape(out.shape)
        return out, weights
    report = checked("attention", wrong_when_several_tokens)
    assert "one token (T = 1)" in report.title and "T > 1" in report.title, report.title
    assert len(report.cases) == len(get_lab("attention").cases())           # every case ran and is listed
    assert [c["result"] for c in report.cases].count("exact") == 1


def test_all_zeros_and_a_difference_everywhere_are_still_described():
    assert "all zeros" in checked("block", lambda x, *parts: torch.zeros_like(x)).title

    def noisy(q, k, v, mask=None):
        out, weights = reference("attention")(q, k, v, mask)
        return out + torch.randn(out.shape, generator=torch.Generator().manual_seed(0)), weights
    title = checked("attention", noisy).title
    assert "across every B, H, T and Dh" in title and "correlation" in title, title


# -- the learner's line, every case listed --------------------------------------------------------

ATTENTION_OVER_QUERIES = '''import math
import torch

# softmax(dim=-1) is what the hint says; this comment is not code
def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(
        scores, dim=-2)
    return weights @ v, weights
'''

KV_WRITE_TOO_LATE = '''import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    n = q.size(1) // k.size(1)
    cache_v[:, :, position + 1] = v[:, :, 0]
    cache_k[:, :, position + 1] = k[:, :, 0]
    keys = cache_k[:, :, :position + 2].repeat_interleave(n, 1)
    values = cache_v[:, :, :position + 2].repeat_interleave(n, 1)
    return (q @ keys.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1) @ values
'''


def test_the_message_quotes_the_learner_s_line_found_in_the_syntax_tree():
    report = check(get_lab("attention"), ATTENTION_OVER_QUERIES, "mine.py")
    assert report.title.startswith("The softmax ran over the queries")
    assert report.title.endswith("Your line 9: `weights = torch.softmax( scores, dim=-2)`"), report.title
    assert report.line == 9
    report = check(get_lab("kv_step"), KV_WRITE_TOO_LATE, "mine.py")
    assert "one slot too late" in report.title and report.line == 7, report.title
    assert "`cache_k[:, :, position + 1] = k[:, :, 0]`" in report.title


def test_a_failing_case_is_listed_whatever_failed():
    report = checked("repeat_kv", lambda x, n_rep: x[:, :, None].expand(-1, -1, n_rep, -1, -1))
    assert report.stage == "shape" and report.cases[-1]["case"] == report.case
    assert report.cases[-1]["result"] == "wrong shape or dtype" and report.cases[-1]["largest difference"] is None

    def raises_on_the_second(x, n_rep):
        if n_rep == 1:
            raise ValueError("n_rep 1")
        return x.repeat_interleave(n_rep, 1)
    report = checked("repeat_kv", raises_on_the_second)
    assert [c["result"] for c in report.cases] == ["exact", "raised"]


# -- right answers in other styles -------------------------------------------------------------

STYLES = {
    "a loop over heads": '''
import math
import torch

def attention(q, k, v, mask=None):
    outs, weights = [], []
    for h in range(q.shape[1]):
        s = q[:, h] @ k[:, h].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            s = s.masked_fill(~mask[:, 0], float("-inf"))
        w = torch.softmax(s, dim=-1)
        outs.append(w @ v[:, h])
        weights.append(w)
    return torch.stack(outs, 1), torch.stack(weights, 1)
''',
    "float64 inside, cast back": '''
import torch

def attention(q, k, v, mask=None):
    q, k, v = q.double(), k.double(), v.double()
    s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if mask is not None:
        s = torch.where(mask, s, torch.tensor(float("-inf"), dtype=s.dtype))
    w = s.softmax(-1)
    return (w @ v).float(), w.float()
''',
    "the dtype's lowest number for the mask": '''
import math
import torch

def attention(q, k, v, mask=None):
    s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(q.size(3))
    if mask is not None:
        s = s.masked_fill(mask.logical_not(), torch.finfo(s.dtype).min)
    w = torch.nn.functional.softmax(s, dim=-1)
    return torch.matmul(w, v), w
''',
    "SDPA, with the weights computed beside it": '''
import torch
import torch.nn.functional as F

def attention(q, k, v, mask=None):
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    w = (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)
    return out, w
''',
}


@pytest.mark.parametrize("style", STYLES)
def test_right_attention_in_another_style_passes(style):
    report = check(get_lab("attention"), STYLES[style], "mine.py")
    assert report.passed, (report.title, report.detail)


def test_right_rms_norm_in_float64_and_rope_as_complex_numbers_pass():
    rms = '''
import torch

def rms_norm(x, weight, eps):
    y = x.double()
    return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)).float() * weight
'''
    rope = '''
import torch

def apply_rope(x, start, base=10000.0):
    T, D = x.shape[-2:]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angle = torch.arange(start, start + T, dtype=torch.float64)[:, None] * theta
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angle), angle)).flatten(-2).float()
'''
    for name, source in (("rms_norm", rms), ("rope", rope)):
        report = check(get_lab(name), source, "mine.py")
        assert report.passed, (name, report.title, report.detail)


def test_the_quoted_line_is_found_by_what_it_computes_never_by_its_text():
    from minitx.labs.quote import find_line
    source = ("def helper(v):\n    return v.softmax(-1)\n\n"
              "def f(x, cache_k, best):\n"
              "    # x >= best, x // 2 and cache_k[0] = x are only words here\n"
              "    note = 'softmax(x) // 2'\n"
              "    for count in range(x // 2):\n"
              "        if count >= best:\n"
              "            cache_k[0] = (\n"
              "                count)\n"
              "    return x\n")
    assert find_line(source, (">=",), "f") == (8, "if count >= best:")
    assert find_line(source, ("//",), "f") == (7, "for count in range(x // 2):")
    assert find_line(source, ("write:cache_k",), "f") == (9, "cache_k[0] = ( count)")
    assert find_line(source, ("softmax",), "f") == (2, "return v.softmax(-1)")         # a helper, when f has none
    assert find_line(source, ("sqrt",), "f") is None and find_line("def f(:", ("sqrt",), "f") is None
