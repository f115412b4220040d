import pytest
import torch

from minitx.attention import GroupedQueryAttention
from minitx.config import ModelConfig
from minitx.encoder import SentimentClassifier
from minitx.model import count_parameters
from minitx.inspect import (WELL_KNOWN_MODELS, attention_parameters, gqa_walkthrough,
                            kv_cache_bytes, parameter_breakdown, pipeline_shapes)
from tests.conftest import random_ids, tiny_config


def test_pipeline_answers_the_quiz_shape():
    stages = {s.name: s.shape for s in pipeline_shapes(ModelConfig(d_model=512, n_heads=4), 10)}
    assert stages["queries"] == (1, 10, 4, 128)     # batch, tokens, heads, head size


@pytest.mark.parametrize("changes", [dict(), dict(n_kv_heads=1, pos_encoding="rope", pooling="cls")])
def test_pipeline_shapes_are_the_real_model_shapes(changes):
    cfg = tiny_config(**changes)
    out = SentimentClassifier(cfg).eval().run(random_ids(2, 7), need_weights=True)
    stages = {s.name: s.shape for s in pipeline_shapes(cfg, 7, batch=2)}
    assert stages["embeddings"] == tuple(out.embeddings.shape)
    assert stages["attention weights"] == tuple(out.attentions[0].shape)
    assert stages[f"after {cfg.n_layers} layer(s)"] == tuple(out.layer_states[-1].shape)
    assert stages[f"pooled ({cfg.pooling})"] == tuple(out.pooled.shape)
    assert stages["logits"] == tuple(out.logits.shape)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_walkthrough_paths_agree_and_groups_are_right(n_kv_heads):
    cfg = tiny_config(n_heads=4, n_kv_heads=n_kv_heads)
    mask = torch.tensor([[True] * 6 + [False] * 2])
    walk = gqa_walkthrough(cfg, torch.randn(1, 8, cfg.d_model), mask, causal=True)
    assert walk.max_difference < 1e-5
    assert walk.kv_group_of_head == [h // (4 // n_kv_heads) for h in range(4)]
    assert walk.shapes["k"] == (1, n_kv_heads, 8, cfg.head_dim)
    assert walk.shapes["k after repeat_kv"] == (1, 4, 8, cfg.head_dim)
    assert walk.weights[0, :, :, 6:].abs().max() == 0


@pytest.mark.parametrize("n_kv_heads", [1, 2, 8])
def test_attention_parameter_formula_matches_a_real_layer(n_kv_heads):
    cfg = ModelConfig(d_model=64, n_heads=8, n_kv_heads=n_kv_heads)
    assert attention_parameters(64, 8, n_kv_heads) == count_parameters(GroupedQueryAttention(cfg))


def test_kv_cache_of_llama_2_7b_is_half_a_megabyte_per_token():
    llama = WELL_KNOWN_MODELS["Llama 2 7B (MHA)"]
    per_token = kv_cache_bytes(llama["n_layers"], llama["n_kv_heads"], 128, seq_len=1)
    assert per_token == 512 * 1024                   # fp16: 2 x 32 layers x 32 heads x 128 x 2 bytes
    gqa = WELL_KNOWN_MODELS["Llama 2 70B (GQA)"]
    assert kv_cache_bytes(gqa["n_layers"], gqa["n_kv_heads"], 128, 4096) == 4096 * 320 * 1024


def test_parameter_breakdown_adds_up():
    cfg = tiny_config(pos_encoding="learned")
    model = SentimentClassifier(cfg)
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["embedding table"] == cfg.vocab_size * cfg.d_model
    assert parts["learned positions"] == cfg.max_len * cfg.d_model


def _tok():
    from minitx.tokenizer import Tokenizer

    texts = ["a great great film", "a bad awful film", "great acting", "awful plot"] * 30
    return Tokenizer.train("bpe", texts, 60), texts


def test_tokenizer_stats_count_what_they_say():
    from minitx.inspect import bpe_merges, review_lengths, tokenizer_stats

    tok, texts = _tok()
    stats = tokenizer_stats(tok, ["great film", "zzz great film " * 50], max_len=10)
    assert stats["truncated_share"] == 0.5
    short = len(tok.encode("great film").ids) + 1                # + [CLS]
    long = len(tok.encode("zzz great film " * 50).ids) + 1
    assert review_lengths(tok, ["zzz great film " * 50, "great film"]) == [short, long]   # sorted, uncut
    assert stats["mean_kept_tokens"] == (short + 10) / 2       # the long one is cut to max_len
    assert stats["unknown_rate"] > 0          # 'z' never seen
    merges = bpe_merges(tok, 5)
    assert len(merges) == 5 and all(len(m) == 2 for m in merges)


def test_pca_cosine_and_neighbours():
    from minitx.inspect import cosine_similarity_matrix, nearest_neighbours, pca_2d

    table = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]])
    sims = cosine_similarity_matrix(table)
    torch.testing.assert_close(sims.diagonal(), torch.ones(4))
    assert nearest_neighbours(table, 0, k=1)[0][0] == 1
    points = pca_2d(torch.randn(50, 2) @ torch.tensor([[3.0, 0, 0], [0, 1.0, 0]]))
    assert points.shape == (50, 2) and points[:, 0].var() > points[:, 1].var()


def test_word_positivity_signs():
    from minitx.inspect import word_positivity

    tok, _ = _tok()
    texts = ["great film"] * 30 + ["awful film"] * 30
    scores = word_positivity(tok, texts, [1] * 30 + [0] * 30, min_count=5)
    great = tok.encode("great").ids[0]
    awful = tok.encode("awful").ids[0]
    assert scores[great] > 1 > -1 > scores[awful]


def test_order_blindness_needs_positions():
    from minitx.inspect import order_blindness, rope_relative_scores

    forward, backward = [2, 5, 6, 7], [2, 7, 6, 5]
    blind = SentimentClassifier(tiny_config(pos_encoding="none"))
    pooled = order_blindness(blind, [forward, backward])
    torch.testing.assert_close(pooled[0], pooled[1], atol=1e-5, rtol=1e-5)
    seeing = SentimentClassifier(tiny_config(pos_encoding="sinusoidal"))
    pooled = order_blindness(seeing, [forward, backward])
    assert not torch.allclose(pooled[0], pooled[1], atol=1e-4)
    same_offset = rope_relative_scores(16, [(3, 1), (10, 8), (30, 28)])
    assert max(same_offset) - min(same_offset) < 1e-4


def test_rope_pair_path_turns_by_theta_per_position():
    import math

    from minitx.inspect import rope_pair_path

    rows = rope_pair_path(8, 5, [0, 1])
    for row in rows:
        theta = 10_000 ** (-2 * row["pair"] / 8)
        assert math.isclose(row["x"], math.cos(row["position"] * theta), abs_tol=1e-5)
        assert math.isclose(row["y"], math.sin(row["position"] * theta), abs_tol=1e-5)
