"""Loading a model in its blocks (`load_pretrained(dtype="q4")`, `--dtype q4`): the file's 4-bit blocks run
as stored, anything else is quantized on load and said, the packed blocks are cached, and SmolLM2 still
knows its capitals."""

from __future__ import annotations

import json
import math

import pytest
import torch

from minitx.decoder import KVCache
from minitx.generate import generate
from minitx.pretrained import PretrainedUnavailable, load_pretrained
from minitx.quant.kernels import int4_unavailable
from minitx.quant.stored import StoredCausalLM
from tests.pretrained_support import load_smollm2, tiny_checkpoints, tiny_llama, write_gguf

pytestmark = pytest.mark.skipif(int4_unavailable() is not None, reason=f"{int4_unavailable()}")
TEXT = "The capital of France is Paris, or so the story goes."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama stored as SmolLM2's file is (matrices Q4_1, embedding Q8_0), in F32, and as a folder."""
    folder = tmp_path_factory.mktemp("tiny-q4")
    _, tokenizer = tiny_checkpoints(folder, {"tiny-Q4_1.gguf": ("Q4_1", "Q8_0"), "tiny-F32.gguf": ("F32", None)})
    return folder, tokenizer


def logits(model, ids):
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()                     # (T, V)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITX_CACHE", str(tmp_path / "cache"))


def test_a_4_bit_file_runs_on_its_blocks_near_its_dequantized_self_and_is_cached(tiny):
    folder, tokenizer = tiny
    path = folder / "tiny-Q4_1.gguf"
    blocks, dequantized = load_pretrained(path, dtype="q4"), load_pretrained(path, use_cache=False)
    assert isinstance(blocks.model, StoredCausalLM) and blocks.notes == () and not blocks.from_cache
    ids = tokenizer.encode(TEXT).ids
    ours, reference = logits(blocks.model, ids), logits(dequantized.model, ids)
    # the same weights; only bfloat16 activations and scales differ
    assert 1e-5 < (ours - reference).abs().max() < 0.02 * reference.abs().max()
    # the engine's steps are the model's own forward, to one bfloat16 rounding (the engine keeps the
    # feed-forward's hidden units in bfloat16, as the kernel gives them)
    with torch.inference_mode():
        cache = KVCache.for_model(blocks.model, 1, len(ids))
        blocks.engine.step(ids[:-3], cache, 0)
        for t in range(len(ids) - 3, len(ids)):
            torch.testing.assert_close(blocks.engine.step([ids[t]], cache, t), ours[t],
                                       atol=2 ** -7 * float(ours[t].abs().max()), rtol=0)
    again = load_pretrained(path, dtype="q4")
    assert again.from_cache and torch.equal(logits(again.model, ids), ours)
    answer = generate(again.model, ids, 12, temperature=0, engine=again.engine).new_ids
    assert answer == generate(blocks.model, ids, 12, temperature=0).new_ids


@pytest.mark.parametrize("source", ["tiny-F32.gguf", "hf"])
def test_a_model_stored_in_float_is_quantized_on_load_and_says_so(tiny, source):
    folder, tokenizer = tiny
    loaded = load_pretrained(folder / source, dtype="q4")
    assert any("stored as float quantized to Q4_1 on load" in note for note in loaded.notes), loaded.notes
    assert any("to Q8_0" in note for note in loaded.notes)
    ids = tokenizer.encode(TEXT).ids
    reference = logits(load_pretrained(folder / source).model, ids)
    difference = (logits(loaded.model, ids) - reference).abs().max()
    assert 1e-4 < difference < 0.25 * reference.abs().max()                 # 4 bits: near, not equal


def test_a_type_kept_only_dequantized_is_said_by_its_name_then_quantized(tiny, tmp_path):
    folder, tokenizer = tiny
    path = write_gguf(tmp_path / "tiny-Q5_0.gguf", tiny_llama(tokenizer.vocab_size), tokenizer, "Q5_0", embedding="Q8_0")
    loaded = load_pretrained(path, dtype="q4")
    assert any("14 tensors stored as Q5_0 were dequantized to float32" in note for note in loaded.notes), loaded.notes
    assert any("quantized to Q4_1 on load" in note for note in loaded.notes)
    assert isinstance(loaded.model, StoredCausalLM)


def test_a_machine_without_the_kernel_runs_float32_and_says_why(tiny, monkeypatch):
    import minitx.pretrained as pretrained

    monkeypatch.setattr(pretrained, "int4_unavailable", lambda: "this PyTorch has no CPU int4 kernel")
    loaded = load_pretrained(tiny[0] / "tiny-Q4_1.gguf", dtype="q4")
    assert not isinstance(loaded.model, StoredCausalLM) and loaded.engine is not None
    assert loaded.notes == ("this PyTorch has no CPU int4 kernel: the weights run in float32 instead",)


def test_a_damaged_4_bit_file_is_one_sentence_naming_it(tiny, tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes((tiny[0] / "tiny-Q4_1.gguf").read_bytes()[:-700])
    with pytest.raises(PretrainedUnavailable) as error:
        load_pretrained(path, dtype="q4")
    assert "cut.gguf" in str(error.value) and "\n" not in str(error.value)


def test_a_run_trained_here_writes_in_4_bits_from_the_command_line(trained_runs, capsys):
    from minitx.generate.cli import main

    assert main(["--model", "lm-tiny", "--checkpoint-dir", str(trained_runs), "--prompt", "This movie",
                 "--max-new-tokens", "5", "--dtype", "q4", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["dtype"] == "q4" and 1 <= result["new_tokens"] <= 5
    assert "quantized to Q4_1 on load" in captured.err


# -- SmolLM2-135M-Instruct in its own 4-bit blocks ----------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return load_smollm2(tmp_path_factory, "q4"), load_smollm2(tmp_path_factory)


def test_smollm2_in_4_bits_answers_paris_and_keeps_the_float_models_predictions(smollm2):
    blocks, full = smollm2
    assert blocks.notes == ()                        # every matrix Q4_1, the embedding Q8_0: nothing converted
    ids = blocks.chat.encode([{"role": "user", "content": "What is the capital of France?"}])
    answer = generate(blocks.model, ids, 24, temperature=0, eos_id=blocks.tokenizer.stop_ids, engine=blocks.engine)
    assert "Paris" in blocks.tokenizer.decode(answer.new_ids) and answer.stopped_at_eos
    text = ("I watched this film twice. The first time I thought the plot was thin, but the acting carried it; "
            "the second time the small details in the script made me laugh out loud.")
    ids = blocks.tokenizer.encode(text).ids
    ours, reference = logits(blocks.model, ids)[:-1], logits(full.model, ids)[:-1]
    target = torch.tensor(ids[1:])
    ratio = math.exp(torch.nn.functional.cross_entropy(ours, target) - torch.nn.functional.cross_entropy(reference, target))
    agreement = (ours.argmax(-1) == reference.argmax(-1)).float().mean()
    # the benchmark holds 1% and 97% on 50 reviews; one short text, with room for its noise
    assert abs(ratio - 1) < 0.05 and agreement >= 0.85, (ratio, agreement)
