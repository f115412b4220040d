"""The decode engine: the same numbers as CausalLM.forward with a cache, in the CPU's layout, leaving the model alone."""

import pytest
import torch

from minitx.decoder import CausalLM, KVCache
from minitx.fast_decode import FastDecoder, decode_layout, share_layout, slab_count
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
    decoder = FastDecoder(fast, cores=cores)
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
    engine = FastDecoder(model)
    assert [generate(model, prompt, 40, temperature=t, top_k=5, seed=1, engine=engine).new_ids
            for t in (0, 1.0)] == plain


def test_the_engine_leaves_the_model_alone_and_a_loader_can_share_one_copy():
    model = model_of(**VARIANTS["llama"])
    before = {name: (p, p.data_ptr(), p.detach().clone()) for name, p in model.named_parameters()}
    FastDecoder(model)
    after = dict(model.named_parameters())           # the very parameters, on the same memory, unchanged
    assert all(after[k] is p and p.data_ptr() == ptr and torch.equal(p, copy) for k, (p, ptr, copy) in before.items())
    layout = decode_layout(model)                      # what a loader does, once, before anyone holds the model
    share_layout(model, layout)
    engine = FastDecoder(model, layout)
    q = model.layers[0].attention.q_proj.weight
    assert q.untyped_storage().data_ptr() == engine.layout["layers.0.qkv"].untyped_storage().data_ptr()
    assert model.embedding.weight.untyped_storage().data_ptr() == engine.layout["head"].untyped_storage().data_ptr()
    assert all(torch.equal(model.state_dict()[k], copy) for k, (_, _, copy) in before.items())


def test_a_model_with_a_function_swapped_in_runs_its_own_forward_and_sampling_swaps_keep_the_engine():
    model = model_of(**VARIANTS["llama"])
    engine = FastDecoder(model)
    prompt = random_ids(1, 5)[0].tolist()
    calls = []

    def counted(x, weight, eps):
        calls.append(1)
        return torch.nn.functional.rms_norm(x, (x.size(-1),), weight, eps)

    with model.using(rms_norm=counted):
        assert not engine.runs(model)
        swapped = generate(model, prompt, 6, temperature=0, engine=engine).new_ids
    assert calls and swapped == generate(model, prompt, 6, temperature=0).new_ids
    with model.using(top_p=lambda logits, p: logits):  # sampling's: the engine still takes the steps
        assert engine.runs(model)
    with pytest.raises(ValueError, match="another model"):
        engine.runs(model_of(**VARIANTS["llama"]))


@pytest.mark.parametrize("changes, why", [(dict(norm_position="post"), "post-norm"),
                                          (dict(ffn="moe"), "mixture of experts")])
def test_models_it_cannot_run_are_refused_with_the_reason(changes, why):
    with pytest.raises(ValueError, match=why):
        FastDecoder(model_of(**changes))


def test_a_matrix_is_cut_into_as_many_slabs_as_cores_that_divide_it():
    assert [slab_count(576, cores) for cores in (1, 2, 3, 4, 5, 7)] == [1, 2, 3, 4, 4, 6]
    assert slab_count(7, 4) == 1
