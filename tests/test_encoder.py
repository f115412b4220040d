import itertools

import pytest
import torch

from minitx.block import RMSNorm, TransformerBlock
from minitx.encoder import Encoder, SentimentClassifier, mean_pool
from minitx.feedforward import FeedForward
from minitx.model import count_parameters
from tests.conftest import random_ids, tiny_config

ALL_VARIANTS = [
    dict(pos_encoding=pe, norm=norm, norm_position=position, ffn=ffn, pooling=pooling)
    for pe, norm, position, ffn, pooling in itertools.product(
        ("sinusoidal", "rope", "learned", "none"), ("layernorm", "rmsnorm"), ("pre", "post"),
        ("relu", "gelu", "swiglu"), ("mean", "cls"))
]


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=lambda v: "-".join(v.values()))
def test_shapes_through_every_module(variant):
    cfg = tiny_config(**variant)
    B, T, D = 3, 10, cfg.d_model
    x = torch.randn(B, T, D)
    mask = torch.ones(B, T, dtype=torch.bool)
    assert FeedForward(cfg)(x).shape == (B, T, D)
    out, weights = TransformerBlock(cfg)(x, key_padding_mask=mask, need_weights=True)
    assert out.shape == (B, T, D) and weights.shape == (B, cfg.n_heads, T, T)
    hidden, states, attentions = Encoder(cfg)(x, mask)
    assert hidden.shape == (B, T, D) and len(states) == cfg.n_layers
    model = SentimentClassifier(cfg).eval()
    ids = random_ids(B, T)
    details = model.run(ids, need_weights=True)
    assert details.logits.shape == (B, cfg.n_classes)
    assert details.pooled.shape == (B, D)
    assert details.embeddings.shape == (B, T, D)
    assert [a.shape for a in details.attentions] == [(B, cfg.n_heads, T, T)] * cfg.n_layers
    # the fast path (fused attention) gives the logits of the explicit one
    torch.testing.assert_close(model(ids), details.logits, atol=1e-5, rtol=1e-5)


def test_rmsnorm_gives_unit_root_mean_square():
    x = torch.randn(4, 5, 16) * 7 + 3
    y = RMSNorm(16)(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(4, 5), atol=1e-4, rtol=1e-4)


def test_mean_pool_averages_only_real_tokens():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])        # (1, 3, 1); the last is padding
    mask = torch.tensor([[True, True, False]])
    assert mean_pool(hidden, mask).item() == 2.0


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=lambda v: "-".join(v.values()))
def test_appending_padding_changes_nothing(variant):
    cfg = tiny_config(**variant)
    model = SentimentClassifier(cfg).eval()
    ids = random_ids(2, 8)
    padded = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)   # 5 [PAD] at the end
    short, long = model.run(ids), model.run(padded)
    torch.testing.assert_close(long.layer_states[-1][:, :8], short.layer_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long.pooled, short.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long.logits, short.logits, atol=1e-5, rtol=1e-5)


def test_a_padded_batch_gives_each_review_its_unpadded_logits():
    model = SentimentClassifier(tiny_config()).eval()
    short, long = random_ids(1, 4), random_ids(1, 9)
    batch = torch.zeros(2, 9, dtype=torch.long)
    batch[0, :4], batch[1] = short[0], long[0]
    logits = model(batch)
    torch.testing.assert_close(logits[0], model(short)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], model(long)[0], atol=1e-5, rtol=1e-5)


def _permuted_outputs(pos_encoding):
    cfg = tiny_config(pos_encoding=pos_encoding, pooling="mean")
    model = SentimentClassifier(cfg).eval()
    ids = random_ids(1, 12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    a, b = model.run(ids), model.run(ids[:, perm])
    return a, b, perm


def test_without_positional_encoding_the_encoder_is_permutation_equivariant():
    a, b, perm = _permuted_outputs("none")
    torch.testing.assert_close(b.layer_states[-1], a.layer_states[-1][:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)   # mean pooling: invariant


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "rope", "learned"])
def test_with_positional_encoding_order_matters(pos_encoding):
    a, b, perm = _permuted_outputs(pos_encoding)
    assert not torch.allclose(b.layer_states[-1], a.layer_states[-1][:, perm], atol=1e-4)
    assert not torch.allclose(b.logits, a.logits, atol=1e-5)


def test_cls_pooling_reads_the_first_token():
    model = SentimentClassifier(tiny_config(pooling="cls")).eval()
    out = model.run(random_ids(2, 6))
    torch.testing.assert_close(out.pooled, model.encoder.final_norm(out.layer_states[-1])[:, 0])


def test_too_long_input_is_refused_with_a_sentence():
    model = SentimentClassifier(tiny_config(max_len=8))
    with pytest.raises(ValueError, match="longer than max_len 8"):
        model(random_ids(1, 9))


def test_kv_heads_shrink_the_parameter_count():
    sizes = [count_parameters(SentimentClassifier(tiny_config(n_kv_heads=g))) for g in (4, 2, 1)]
    assert sizes[0] > sizes[1] > sizes[2]
