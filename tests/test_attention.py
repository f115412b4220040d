import math

import pytest
import torch
import torch.nn.functional as F

from minitx.attention import (GroupedQueryAttention, attention_mask, explicit_attention,
                              fused_attention, repeat_kv)
from tests.conftest import tiny_config


def reference_mha(x, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, n_heads, key_padding_mask=None):
    """Plain multi-head attention written independently, with einsum and a loop over heads."""
    B, T, D = x.shape
    dh = D // n_heads
    q, k, v = x @ q_w.T + q_b, x @ k_w.T + k_b, x @ v_w.T + v_b
    outputs = []
    for h in range(n_heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = torch.einsum("btd,bsd->bts", q[..., sl], k[..., sl]) / math.sqrt(dh)
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, :], float("-inf"))
        outputs.append(torch.einsum("bts,bsd->btd", scores.softmax(-1), v[..., sl]))
    return torch.cat(outputs, -1) @ o_w.T + o_b


def test_gqa_with_as_many_kv_heads_as_heads_is_plain_multi_head_attention():
    cfg = tiny_config(n_heads=4, n_kv_heads=4, pos_encoding="none")
    attn = GroupedQueryAttention(cfg).eval()
    x = torch.randn(3, 7, cfg.d_model)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    ours, _ = attn(x, key_padding_mask=mask)
    theirs = reference_mha(x, attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight,
                           attn.k_proj.bias, attn.v_proj.weight, attn.v_proj.bias,
                           attn.out_proj.weight, attn.out_proj.bias, cfg.n_heads, mask)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gqa_equals_torch_multihead_attention_when_kv_heads_equal_heads():
    cfg = tiny_config(n_heads=4, n_kv_heads=4, pos_encoding="none")
    attn = GroupedQueryAttention(cfg).eval()
    torch_mha = torch.nn.MultiheadAttention(cfg.d_model, cfg.n_heads, batch_first=True).eval()
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        torch_mha.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        torch_mha.out_proj.weight.copy_(attn.out_proj.weight)
        torch_mha.out_proj.bias.copy_(attn.out_proj.bias)
    x = torch.randn(2, 9, cfg.d_model)
    torch.testing.assert_close(attn(x)[0], torch_mha(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_gqa_matches_sdpa_with_repeat_interleaved_kv(n_kv_heads):
    cfg = tiny_config(n_heads=4, n_kv_heads=n_kv_heads, pos_encoding="none")
    attn = GroupedQueryAttention(cfg).eval()
    B, T = 2, 11
    x = torch.randn(B, T, cfg.d_model)
    q = attn.q_proj(x).view(B, T, 4, cfg.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, n_kv_heads, cfg.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, n_kv_heads, cfg.head_dim).transpose(1, 2)
    k, v = (t.repeat_interleave(4 // n_kv_heads, dim=1) for t in (k, v))
    reference = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, cfg.d_model)
    reference = attn.out_proj(reference)
    for need_weights in (False, True):
        ours, _ = attn(x, need_weights=need_weights)
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert attn.k_proj.out_features == n_kv_heads * cfg.head_dim


def test_repeat_kv_is_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(repeat_kv(x, 4), x.repeat_interleave(4, dim=1))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_explicit_path_equals_fused_path(causal, n_kv_heads):
    q = torch.randn(2, 4, 10, 8)
    k, v = torch.randn(2, n_kv_heads, 10, 8), torch.randn(2, n_kv_heads, 10, 8)
    padding = torch.ones(2, 10, dtype=torch.bool)
    padding[0, 6:] = False
    mask = attention_mask(padding, 10, causal)
    explicit, weights = explicit_attention(q, k, v, mask)
    torch.testing.assert_close(explicit, fused_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    # weights: rows sum to 1, no weight on padding, none on the future when causal
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 10))
    assert weights[0, :, :, 6:].abs().max() == 0
    if causal:
        assert torch.triu(weights, diagonal=1).abs().max() == 0


def test_module_returns_weights_only_on_the_explicit_path():
    cfg = tiny_config(pos_encoding="rope")
    attn = GroupedQueryAttention(cfg).eval()
    x = torch.randn(2, 6, cfg.d_model)
    out, weights = attn(x, need_weights=True)
    assert out.shape == (2, 6, cfg.d_model)
    assert weights.shape == (2, cfg.n_heads, 6, 6)
    fused_out, none = attn(x)
    assert none is None
    torch.testing.assert_close(out, fused_out, atol=1e-5, rtol=1e-5)
