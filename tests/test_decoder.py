"""The decoder: causal mask, KV cache, generation, mixture of experts, bits per character."""

import math

import pytest
import torch

from minitx.decoder import CausalLM, KVCache
from minitx.feedforward import FeedForward
from minitx.generate import allowed_logits, check_sampling, generate, next_token
from minitx.inspect import causal_check, expert_load, kv_cache_bytes, measure_kv_cache
from minitx.moe import MixtureOfExperts, expert_choices, load_balancing_loss
from tests.conftest import random_ids, tiny_config


def lm_config(**changes):
    return tiny_config(task="lm", **{"pos_encoding": "rope", "norm": "rmsnorm", "ffn": "swiglu", **changes})


def lm(seed=0, **changes) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(lm_config(**changes)).eval()


KINDS = {"MHA": 4, "GQA": 2, "MQA": 1}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
@pytest.mark.parametrize("pos", ["rope", "sinusoidal", "learned"])
@pytest.mark.parametrize("kind", KINDS)
def test_step_by_step_logits_with_the_cache_equal_the_full_sequence(kind, pos, fused):
    model = lm(n_kv_heads=KINDS[kind], pos_encoding=pos, ffn="moe" if pos == "learned" else "swiglu")
    ids = random_ids(2, 12)                                                    # (B, T)
    with torch.no_grad():
        full = model(ids).logits                                               # (B, T, V)
        cache = KVCache.for_model(model, batch=2, length=12)
        prefix = model(ids[:, :5], cache=cache, start=0, need_weights=not fused).logits
        steps = [model(ids[:, t:t + 1], cache=cache, start=t, need_weights=not fused).logits
                 for t in range(5, 12)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generation_is_the_same_with_and_without_the_cache(kind):
    model = lm(n_kv_heads=KINDS[kind])
    prompt = random_ids(1, 6)[0].tolist()
    cached = generate(model, prompt, 30, temperature=0, use_cache=True)
    plain = generate(model, prompt, 30, temperature=0, use_cache=False)
    assert cached.new_ids == plain.new_ids and len(cached.new_ids) == 30
    assert cached.probabilities == pytest.approx(plain.probabilities, abs=1e-5)
    sampled = [generate(model, prompt, 30, temperature=1.0, top_k=10, seed=3, use_cache=c).new_ids for c in (True, False)]
    assert sampled[0] == sampled[1]                       # the same seed, the same text


@pytest.mark.parametrize("pos", ["rope", "sinusoidal"])
def test_changing_later_tokens_never_changes_an_earlier_output(pos):
    model = lm(pos_encoding=pos)
    ids = random_ids(1, 16)[0].tolist()
    for t in (0, 5, 14):
        before, after = causal_check(model, ids, t, seed=t)
        assert before == 0.0 and after > 1e-3, (t, before, after)


def test_without_the_causal_mask_later_tokens_do_change_earlier_outputs():
    """The check above can fail: the same block without its mask (the encoder's) shows it."""
    model = lm()
    for layer in model.layers:
        real = layer.forward
        layer.forward = lambda x, *a, _real=real, **k: _real(x, *a, **{**k, "causal": False})
    before, _ = causal_check(model, random_ids(1, 16)[0].tolist(), 5)
    assert before > 1e-3


def test_cache_bytes_follow_the_formula_and_shrink_with_the_key_value_heads():
    measured = {}
    for kind, g in KINDS.items():
        cfg = lm_config(n_kv_heads=g)
        cache = KVCache.for_model(CausalLM(cfg), batch=3, length=20)
        assert cache.nbytes == 2 * cfg.n_layers * 3 * g * 20 * cfg.head_dim * 4
        assert cache.nbytes == kv_cache_bytes(cfg.n_layers, g, cfg.head_dim, 20, batch=3, bytes_per_value=4)
        assert tuple(cache.layers[0].keys.shape) == (3, g, 20, cfg.head_dim)      # (B, G, T, Dh)
        measured[kind] = cache.nbytes
    assert measured["MHA"] / measured["MQA"] == 4 and measured["GQA"] / measured["MQA"] == 2   # H : G : 1


def test_measured_cache_rows_for_mha_gqa_and_mqa():
    rows = measure_kv_cache(lm_config(d_model=64, n_heads=8, n_kv_heads=8, max_len=64), prompt_tokens=8,
                            new_tokens=8)
    assert [(r.kind, r.n_kv_heads) for r in rows] == [("MHA", 8), ("GQA", 2), ("MQA", 1)]
    assert all(r.measured_bytes == r.formula_bytes and r.tokens == 8 for r in rows)


def test_one_expert_for_every_token_is_the_dense_feed_forward():
    cfg = tiny_config(ffn="moe", n_experts=1, experts_per_token=1)
    torch.manual_seed(0)
    moe, dense = MixtureOfExperts(cfg), FeedForward(cfg.replace(ffn="swiglu"))
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 7, cfg.d_model)
    torch.testing.assert_close(moe(x), dense(x))
    assert moe.choices.shape == (2, 7, 1) and moe.aux_loss.item() == pytest.approx(1.0)


def test_the_load_balancing_loss_is_1_for_a_uniform_router_and_more_for_a_lopsided_one():
    cfg = tiny_config(ffn="moe", n_experts=4, experts_per_token=2)
    moe = MixtureOfExperts(cfg)
    torch.nn.init.zeros_(moe.router.weight)               # every expert equally likely, for every token
    moe(torch.randn(3, 5, cfg.d_model))
    assert moe.aux_loss.item() == pytest.approx(1.0)
    with torch.no_grad():
        moe.router.weight[0] = 5.0                        # expert 0 wins for tokens with a positive sum
    x = torch.rand(3, 5, cfg.d_model)
    moe(x)
    assert moe.aux_loss.item() > 1.5
    assert expert_load(moe.choices, 4)[0] == 15           # every token chose expert 0


def test_routing_weights_renormalise_and_every_token_uses_k_different_experts():
    torch.manual_seed(0)
    model = lm(ffn="moe", n_experts=4, experts_per_token=2).train()
    ids = random_ids(2, 10)
    loss = model(ids).logits.sum()
    (choices,) = expert_choices(model)[:1]
    assert choices.shape == (2, 10, 2) and (choices[..., 0] != choices[..., 1]).all()
    assert load_balancing_loss(model) is not None
    loss.backward()
    assert model.layers[0].feed_forward.router.weight.grad.abs().sum() > 0   # the router learns


@pytest.mark.parametrize("top_k, top_p", [(1, 1.0), (3, 1.0), (0, 0.5), (0, 0.0), (5, 0.9)])
def test_sampling_never_leaves_the_allowed_set(top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=g) * 3
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    allowed = set(order[:top_k].tolist()) if top_k else set(range(50))
    if top_p < 1:
        mass, nucleus = 0.0, set()
        for token in order.tolist():          # the smallest set of best tokens reaching top_p
            nucleus.add(token)
            mass += float(probs[token])
            if mass >= top_p:
                break
        allowed &= nucleus
    kept = set(torch.isfinite(allowed_logits(logits, top_k, top_p)).nonzero().flatten().tolist())
    assert kept == allowed
    drawn = {next_token(logits, 1.0, top_k, top_p, g) for _ in range(300)}   # (the nucleus is of logits / T)
    assert drawn <= allowed and (len(drawn) > 1 or len(allowed) == 1)


def test_temperature_0_is_the_argmax():
    logits = torch.randn(100, generator=torch.Generator().manual_seed(1))
    assert all(next_token(logits, 0, k, p) == int(logits.argmax()) for k, p in ((0, 1.0), (5, 0.3), (1, 0.0)))


@pytest.mark.parametrize("args", [dict(temperature=-0.1), dict(temperature=float("nan")), dict(temperature=101),
                                  dict(top_k=-1), dict(top_k=2.5), dict(top_p=1.5), dict(top_p=-0.1)])
def test_impossible_sampling_settings_are_clear_errors(args):
    with pytest.raises(ValueError, match="must be"):
        check_sampling(**{"temperature": 1.0, "top_k": 0, "top_p": 1.0, **args})


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens_with_a_note():
    model = lm(max_len=16)
    prompt = random_ids(1, 40)[0].tolist()
    out = generate(model, prompt, 6, temperature=0)
    assert out.prompt_ids == prompt[-10:] and len(out.new_ids) == 6
    assert "first 30 of 40 tokens were left out" in out.notes[0]
    many = generate(model, prompt[:3], 100, temperature=0)
    assert len(many.new_ids) == 15 and "cut from 100 to 15" in many.notes[0]
    assert many.cache_bytes == kv_cache_bytes(2, 2, 8, 16, 1, 4)


def test_generation_stops_at_the_end_of_review_token():
    model = lm()
    first = generate(model, [3, 7, 8], 20, temperature=0)
    assert not first.stopped_at_eos and len(first.new_ids) == 20
    eos = first.new_ids[-1]                           # say the last token written is the end of a review
    out = generate(model, [3, 7, 8], 20, temperature=0, eos_id=eos)
    assert out.stopped_at_eos and out.new_ids == first.new_ids[:first.new_ids.index(eos) + 1]


def test_the_output_head_is_the_embedding_table_and_attention_looks_back_only():
    model = lm()
    ids = random_ids(1, 5)
    with torch.no_grad():
        out = model(ids, need_weights=True)
        head = model.final_norm(out.layer_states[-1]) @ model.embedding.weight.T
    torch.testing.assert_close(out.logits, head)
    assert [n for n, _ in model.named_parameters() if n.startswith("embedding")] == ["embedding.weight"]
    assert all(w.shape == (1, 4, 5, 5) and torch.all(w.triu(1) == 0) for w in out.attentions)   # upper triangle empty


def test_bits_per_character_is_the_hand_computation():
    """A model that gives every next token probability 1/4 needs 2 bits per token; over a text of
    8 predicted tokens spelling 16 characters that is 1 bit per character."""
    from minitx.metrics import bits_per_char, compressor_bits_per_char, perplexity

    total_nats = 8 * math.log(4)
    assert bits_per_char(total_nats, 16) == pytest.approx(1.0)
    assert perplexity(total_nats, 8) == pytest.approx(4.0)
    text = "the film was good and the film was long\n" * 20
    bits = compressor_bits_per_char(text)
    assert set(bits) == {"zlib", "bz2", "xz"} and all(0 < b < 8 for b in bits.values())
    with pytest.raises(ValueError):
        bits_per_char(1.0, 0)


def test_held_out_scoring_counts_every_token_once():
    from minitx.data import pack_blocks, token_stream

    stream = token_stream([[5, 6, 7], [8, 9]], eos_id=3)
    assert stream == [3, 5, 6, 7, 3, 8, 9, 3]
    blocks = pack_blocks(stream, 3, keep_tail=True)
    targets = [t for b in blocks for t in b[1:].tolist()]
    assert targets == stream[1:]                          # every token but the first, exactly once
    assert [len(b) for b in pack_blocks(stream, 3)] == [4, 4]   # training drops the short tail
