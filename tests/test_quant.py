"""Weights as stored: minitx's block formats bit for bit equal to ggml's (gguf.quants), the int4 kernel
equal to multiplying by the dequantized blocks, and a CausalLM that runs on its blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minitx.decoder import CausalLM, KVCache
from minitx.generate import generate
from minitx.quant.blocks import BLOCK, FORMATS, Quantized, from_gguf, quantize, to_gguf
from minitx.quant.kernels import ACTIVATIONS, Int4Matrix, Q8Table, int4_unavailable
from minitx.quant.stored import in_blocks, in_blocks_of, stored_model
from tests.conftest import random_ids, tiny_config

GGUF_FORMATS = ["Q8_0", "Q4_0", "Q4_1"]


def adversarial_rows() -> torch.Tensor:
    """Blocks that break careless quantizers, one per row, then random ones.  -> (12, 64)"""
    torch.manual_seed(0)
    rows = torch.randn(12, 64)
    rows[0, :32] = 0.75                                          # all equal: d = 0
    rows[1, :32] = 0.0                                           # zeros
    rows[2, :32] = -torch.rand(32) - 0.1                         # negative only
    rows[3, :32] = torch.randn(32) * 0.01
    rows[3, 7] = 40.0                                            # one outlier
    rows[4, :32] = torch.randn(32) * 1e-7                        # scales below float16's normal range
    rows[5, :32] = torch.arange(32) - 16.0                       # exact halves after scaling
    rows[6, :32] = torch.linspace(-1, 1, 32)
    rows[7, :32] = -rows[7, :32].abs()
    rows[7, 3] = 2.0                                             # the largest magnitude positive, the rest negative
    rows[8, :32] = 1e4 * torch.randn(32)                         # large, still inside float16
    return rows


@pytest.mark.parametrize("name", GGUF_FORMATS)
def test_quantizing_writes_ggmls_bytes_and_reads_them_back(name):
    import gguf.quants

    weights = torch.cat([adversarial_rows(), torch.randn(20, 64) * torch.rand(20, 1) * 3])
    ours = quantize(weights, name)
    theirs = gguf.quants.quantize(weights.numpy(), FORMATS[name].gguf_type)
    assert np.array_equal(to_gguf(ours), theirs)
    back = from_gguf(theirs, FORMATS[name].gguf_type, tuple(weights.shape))
    assert np.array_equal(back.dequantize().numpy(), gguf.quants.dequantize(theirs, FORMATS[name].gguf_type))
    assert back.nbytes == theirs.nbytes


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_round_trips_within_half_a_step(name):
    weights = torch.cat([adversarial_rows()[:9], torch.randn(8, 64)])          # finite, inside float16
    q = quantize(weights, name)
    assert int(q.codes.min()) >= (-127 if name == "Q8_0" else 0) and int(q.codes.max()) <= max(127, q.format.levels)
    step = q.scale.float().abs().repeat_interleave(BLOCK, dim=1)                 # (N, K)
    largest = weights.abs().view(17, -1, BLOCK).amax(-1).repeat_interleave(BLOCK, dim=1)
    error = (q.dequantize() - weights).abs()
    # half a step, plus float16's rounding of d (and m) carried over the codes, relative and, below
    # float16's normal range, absolute; Q4_0's top code can be clipped (its largest weight sits at
    # -8 d, the other end reaches only 7 d): a whole step there
    slack = 1.0 if name == "Q4_0" else 0.5
    bound = step * slack + largest * 2 ** -9 + (q.format.levels + 1) * 2 ** -24
    assert bool((error <= bound).all()), (error - bound).max()
    fewer = [quantize(weights[9:], n).dequantize() for n in ("Q4_1", "Q3_1", "Q2_1")]
    errors = [(f - weights[9:]).pow(2).mean().item() for f in fewer]
    assert errors[0] < errors[1] < errors[2]                                     # fewer bits, more error


def test_a_row_not_made_of_blocks_and_a_short_tensor_are_one_sentence():
    with pytest.raises(ValueError, match=r"shape \(4, 40\).*multiple of 32"):
        quantize(torch.randn(4, 40), "Q4_1")
    raw = to_gguf(quantize(torch.randn(4, 64), "Q4_1"))
    with pytest.raises(ValueError, match="blk.3.ffn_up.weight holds 100 bytes .* cut short"):
        from_gguf(raw.reshape(-1)[:100], 3, (4, 64), "blk.3.ffn_up.weight")
    with pytest.raises(ValueError, match="GGML type 14"):
        from_gguf(raw, 14, (4, 64), "blk.0.attn_q.weight")


needs_kernel = pytest.mark.skipif(int4_unavailable() is not None, reason=f"{int4_unavailable()}")


def engine_weights(q: Quantized) -> torch.Tensor:
    """The weights the int4 kernel multiplies by: scale d and zero m + 8d rounded to bfloat16.  -> (N, K)"""
    d = q.scale.float()
    zero = (q.minimum.float() + 8 * d) if q.minimum is not None else torch.zeros_like(d)
    d, zero = d.to(ACTIVATIONS).float(), zero.to(ACTIVATIONS).float()
    rows, cols = q.shape
    codes = q.codes.float().view(rows, cols // BLOCK, BLOCK) - 8
    return (codes * d[..., None] + zero[..., None]).view(rows, cols)


@needs_kernel
@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q3_1", "Q2_1"])
def test_the_int4_kernel_multiplies_by_the_blocks_as_dequantized(name):
    torch.manual_seed(1)
    parts = [quantize(torch.randn(n, 96), name) for n in (64, 32, 32)]          # q, k, v side by side
    matrix = Int4Matrix(parts)
    x = torch.randn(5, 96)
    got = matrix(x).float()                                                      # (5, 128)
    weights = torch.cat([engine_weights(p) for p in parts])
    expected = x.to(ACTIVATIONS).float() @ weights.T
    # the kernel's bfloat16 output: one rounding of each sum, 1 part in 256 at most
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=2 ** -8)
    # and the scales' bfloat16 rounding is small beside the format's own error
    exact = x.to(ACTIVATIONS).float() @ torch.cat([p.dequantize() for p in parts]).T
    assert (expected - exact).abs().max() < 0.02 * exact.abs().max()
    assert matrix.nbytes == 128 * 96 // 2 + 128 * 3 * 4


@needs_kernel
def test_the_embedding_runs_as_stored_lookups_exact_and_the_head_in_two_exact_halves():
    torch.manual_seed(2)
    table = quantize(torch.randn(320, 64), "Q8_0")
    table.codes[0, :4] = torch.tensor([-127, 127, 0, -1], dtype=torch.int8)       # both ends, and either side of 0
    q8 = Q8Table(table)
    ids = torch.tensor([0, 5, 319, 5])
    assert torch.equal(q8.rows(ids), table.dequantize()[ids])
    x = torch.randn(3, 64)
    expected = x.to(ACTIVATIONS).float() @ table.dequantize().T                    # (3, 320)
    # the halves' scales 16d and d in bfloat16 (a relative 2^-9 each), and each half's sum returned in
    # bfloat16: both bounded by the sum of |x| |w| times 2^-8
    bound = (x.to(ACTIVATIONS).float().abs() @ table.dequantize().abs().T) * 2 ** -7 + 1e-6
    assert bool(((q8(x) - expected).abs() <= bound).all())
    # with float32 scales and activations the split is exact: only the order of the sums differs
    exact = Q8Table(table, torch.float32)
    torch.testing.assert_close(exact(x), x @ table.dequantize().T, atol=1e-4, rtol=1e-5)


def tiny_lm(seed: int = 0, **changes) -> CausalLM:
    torch.manual_seed(seed)
    cfg = tiny_config(**{**dict(task="lm", pos_encoding="rope", norm="rmsnorm", ffn="swiglu", vocab_size=96),
                         **changes})
    model = CausalLM(cfg).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


@needs_kernel
def test_a_stored_model_steps_as_its_own_forward_and_stays_near_the_float_model():
    model = tiny_lm()
    stored, engine, notes = in_blocks_of(model)
    assert any("quantized to Q4_1" in note for note in notes) and any("to Q8_0" in note for note in notes)
    assert type(stored.layers[0].attention.q_proj).__name__ == "BlockLinear"
    assert all(not p.is_meta for p in stored.parameters())
    ids = random_ids(1, 12, vocab=96)
    with torch.inference_mode():
        cache = KVCache.for_model(stored, 1, 12)
        whole = stored(ids).logits[0]                                             # (T, V)
        engine.step(ids[0, :6].tolist(), cache, 0)
        for t in range(6, 12):
            got = engine.step([int(ids[0, t])], cache, t)
            torch.testing.assert_close(got, whole[t], atol=1e-4, rtol=1e-3)
        reference = model(ids).logits[0]
    # 4-bit weights: near the float model, not equal to it
    difference = (whole - reference).abs().max() / reference.abs().max()
    assert 1e-4 < difference < 0.25, difference
    prompt = ids[0, :4].tolist()
    assert len(generate(stored, prompt, 8, temperature=0, engine=engine).new_ids) == 8


@needs_kernel
def test_a_matrix_the_kernel_cannot_run_stays_float_and_is_named():
    model = tiny_lm()
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    state, _ = in_blocks(state)
    state["layers.1.feed_forward.down.weight"] = quantize(model.layers[1].feed_forward.down.weight, "Q8_0")
    stored, layout, in_float = stored_model(state, model.cfg)
    assert in_float == ["layers.1.feed_forward.down"]
    with torch.inference_mode():
        assert torch.isfinite(stored(random_ids(1, 5, vocab=96)).logits).all()


def test_a_model_the_engine_cannot_run_is_studied_through_its_own_forward():
    from minitx.quant import study

    model = tiny_lm(ffn="moe", n_experts=2, experts_per_token=1)
    copy, engine, runs = study.engine_for(model, "Q4_1")
    assert engine is None and "mixture of experts" in runs
    assert study.bytes_per_token(None, copy) == sum(p.numel() * 4 for p in model.parameters())
    quality = [study.text_loss(m, [random_ids(1, 12, vocab=96)[0].tolist()])[0] for m in (model, copy)]
    assert quality[0] != quality[1] and all(map(math.isfinite, quality))
