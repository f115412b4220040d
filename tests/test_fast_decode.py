"""The fast decode step: the same numbers as CausalLM.forward with a cache, in the CPU's layout."""

import pytest
import torch

from minitx.decoder import CausalLM, KVCache
from minitx.fast_decode import FastDecoder, attach, decoder_of, slab_count
from minitx.generate import generate
from tests.conftest import random_ids, tiny_config

VARIANTS = {
    "llama": dict(pos_encoding="rope", norm="rmsnorm", ffn="swiglu", bias=False, scale_embeddings=False,
                  rope_base=100_000.0, rms_norm_eps=1e-5),
    "minitx's lm": dict(pos_encoding="rope", norm="rmsnorm", ffn="swiglu"),
    "biases, gelu, layernorm, sinusoidal": dict(pos_encoding="sinusoidal", norm="layernorm", ffn="gelu"),
    "relu, learned positions, MQA": dict(pos_encoding="learned", ffn="relu", n_kv_heads=1),
    "MHA, no positions": dict(pos_encoding="none", n_kv_heads=4),
}


def model_of(seed=0, **changes) -> CausalLM:
    torch.manual_seed(seed)
    model = CausalLM(tiny_config(task="lm", **changes)).eval()
    with torch.no_grad():               # norms and biases away from their 1 and 0, so a dropped one shows
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("cores", [1, 2, 3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_step_equals_the_model_with_a_cache(variant, cores):
    reference = model_of(**VARIANTS[variant])
    fast = model_of(**VARIANTS[variant])
    decoder = attach(fast, cores=cores)
    ids = random_ids(1, 16)                                                       # (1, T)
    with torch.inference_mode():
        expected_cache, cache = KVCache.for_model(reference, 1, 16), KVCache.for_model(fast, 1, 16)
        # the prompt's pass, then one token at a time, then three at once after the cache's start
        for first, last in [(0, 5)] + [(t, t + 1) for t in range(5, 13)] + [(13, 16)]:
            expected = reference(ids[:, first:last], cache=expected_cache, start=first).logits[0, -1]
            got = decoder.step(ids[0, first:last].tolist(), cache, first)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache.layers[-1].keys, expected_cache.layers[-1].keys, atol=1e-5, rtol=0)


def test_greedy_and_sampled_text_is_the_same_through_either_path():
    model = model_of(**VARIANTS["llama"])
    prompt = random_ids(1, 5)[0].tolist()
    plain = [generate(model, prompt, 40, temperature=t, top_k=5, seed=1).new_ids for t in (0, 1.0)]
    attach(model)
    assert [generate(model, prompt, 40, temperature=t, top_k=5, seed=1).new_ids for t in (0, 1.0)] == plain
    assert [generate(model, prompt, 40, temperature=t, top_k=5, seed=1, fast=False).new_ids for t in (0, 1.0)] == plain


def test_the_model_keeps_its_numbers_and_shares_the_decoders_memory():
    model = model_of(**VARIANTS["llama"])
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    decoder = attach(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    qkv = decoder.layout["layers.0.qkv"]                                          # (D, N)
    q = model.layers[0].attention.q_proj.weight
    assert q.untyped_storage().data_ptr() == qkv.untyped_storage().data_ptr()     # a view, not a copy
    assert model.embedding.weight.untyped_storage().data_ptr() == decoder.layout["head"].untyped_storage().data_ptr()


def test_a_model_whose_weights_were_replaced_no_longer_uses_its_decoder():
    model = model_of(**VARIANTS["llama"])
    attach(model)
    assert decoder_of(model) is not None
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    assert decoder_of(model) is None
    prompt = random_ids(1, 5)[0].tolist()
    assert len(generate(model, prompt, 6, temperature=0).new_ids) == 6            # the plain path, still right


@pytest.mark.parametrize("changes, why", [(dict(norm_position="post"), "post-norm"),
                                          (dict(ffn="moe"), "mixture of experts")])
def test_models_it_cannot_run_are_refused_with_the_reason(changes, why):
    with pytest.raises(ValueError, match=why):
        FastDecoder(model_of(**changes))


def test_a_matrix_is_cut_into_as_many_slabs_as_cores_that_divide_it():
    assert [slab_count(576, cores) for cores in (1, 2, 3, 4, 5, 7)] == [1, 2, 3, 4, 4, 6]
    assert slab_count(7, 4) == 1
