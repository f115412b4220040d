"""A trained lm-tiny out of minitx: the Hugging Face folder and the GGUF file read back by minitx and by
transformers to the same numbers, the quantized files byte-equal to gguf.quants, and bad input refused."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from minitx.checkpoint import load_run
from minitx.config import ModelConfig
from minitx.export import export_problem
from minitx.export.cli import export, main
from minitx.export.tensors import llama_tensors
from minitx.generate import generate
from minitx.pretrained import load_pretrained

TEXTS = ["This movie was great, I loved it!", "Hello\n\nworld", "  three   spaces   ", "😀🎬🍿 emoji only",
         "שלום עולם", "日本語のテキスト", "tabs\tand\r\nreturns", "10/10 would watch again!!!", "", "a",
         "It's, like, 'quoted' \"twice\"", "ÀÉÎÕÜ ñ ç ß", "<br /><br />HTML left in", "Ünïcödé — dashes – and …",
         "UPPER lower MiXeD", "numbers 1234567890 and 3.14", "x" * 200, "\n", "the the the the", "Привет, мир"]


@pytest.fixture(scope="module")
def run(trained_runs, tmp_path_factory):
    """lm-tiny, trained for the session (copied: tests may not change the session's runs)."""
    folder = tmp_path_factory.mktemp("export") / "lm-tiny"
    shutil.copytree(trained_runs / "lm-tiny", folder)
    return folder


@pytest.fixture(scope="module")
def exported(run):
    """The run as a Hugging Face folder and as GGUF files of every type."""
    out = run.parent / "exported"
    out.mkdir()
    export(run, "hf", out / "hf")
    for kind in ("f32", "bf16", "q8_0", "q4_1", "q4_0"):
        export(run, "gguf", out / f"lm-tiny-{kind}.gguf", kind)
    return out


def reference(run):
    loaded = load_run(run)
    ids = loaded.tokenizer.start_ids + loaded.tokenizer.encode(TEXTS[0]).ids
    with torch.no_grad():
        return loaded, ids, loaded.model.eval()(torch.tensor([ids])).logits[0]


def test_transformers_reads_the_folder_to_minitx_s_logits_greedy_tokens_and_token_ids(run, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded, ids, logits = reference(run)
    model = AutoModelForCausalLM.from_pretrained(exported / "hf").eval()
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0]
    assert (theirs - logits).abs().max() < 1e-4
    ours = generate(loaded.model, ids, 20, temperature=0, n_top=0, eos_id=None).new_ids
    with torch.no_grad():
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                                min_new_tokens=20)[0, len(ids):].tolist()
    assert greedy == ours
    tokenizer = AutoTokenizer.from_pretrained(exported / "hf")
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == loaded.tokenizer.encode(text).ids, text
        assert tokenizer.decode(loaded.tokenizer.encode(text).ids) == text, text


def test_minitx_reads_both_exports_back_to_the_run_itself(run, exported):
    loaded, ids, logits = reference(run)
    for source in (exported / "hf", exported / "lm-tiny-f32.gguf"):
        back = load_pretrained(source, use_cache=False)
        assert back.model.cfg.bias and back.model.cfg.scale_embeddings
        assert back.tokenizer.start_ids == loaded.tokenizer.start_ids
        with torch.no_grad():
            assert torch.equal(back.model(torch.tensor([ids])).logits[0], logits), source.name
        assert all(back.tokenizer.encode(text).ids == loaded.tokenizer.encode(text).ids for text in TEXTS)


def test_transformers_reads_the_gguf_file_to_minitx_s_logits(run, exported):
    from transformers import AutoConfig, AutoModelForCausalLM

    _, ids, logits = reference(run)
    config = AutoConfig.from_pretrained(exported, gguf_file="lm-tiny-f32.gguf")
    config.attention_bias = config.mlp_bias = True       # GGUF's llama metadata has no word for biases
    model = AutoModelForCausalLM.from_pretrained(exported, gguf_file="lm-tiny-f32.gguf", config=config).eval()
    with torch.no_grad():
        assert (model(torch.tensor([ids])).logits[0] - logits).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["q8_0", "q4_1", "q4_0", "bf16"])
def test_a_typed_file_holds_what_gguf_quants_writes_for_the_same_weights(run, exported, kind):
    import gguf
    from gguf.quants import quantize

    weights = llama_tensors(load_run(run).model.eval(), "gguf")
    reader = gguf.GGUFReader(exported / f"lm-tiny-{kind}.gguf")
    wanted = gguf.GGMLQuantizationType[kind.upper()]
    typed = 0
    for tensor in reader.tensors:
        expected = weights[tensor.name].numpy()
        if tensor.tensor_type == wanted:
            assert np.array_equal(np.asarray(tensor.data).reshape(-1).view(np.uint8),
                                  quantize(expected, wanted).reshape(-1).view(np.uint8)), tensor.name
            typed += 1
        else:                           # norms and biases, and nothing else, stay float32
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32 and expected.ndim == 1, tensor.name
            assert np.array_equal(np.asarray(tensor.data).reshape(expected.shape), expected)
    assert typed == 1 + 1 + 7          # the input table, the output head, 7 matrices in lm-tiny's one layer


def test_what_cannot_be_exported_gets_one_sentence_naming_it_and_the_preset_that_does(run, trained_runs, tmp_path):
    tokenizer = load_run(run).tokenizer
    lm = dict(task="lm", vocab_size=tokenizer.vocab_size, pos_encoding="rope", norm="rmsnorm", ffn="swiglu")
    for change, said in (({"pos_encoding": "learned"}, "learned positions"), ({"norm_position": "post"}, "post-norm"),
                         ({"norm": "layernorm"}, "layernorm"), ({"ffn": "gelu"}, "gelu feed-forward"),
                         ({"ffn": "moe"}, "mixture of experts")):
        problem = export_problem(ModelConfig(**{**lm, **change}), tokenizer)
        assert said in problem and "lm-quick" in problem, problem
    with pytest.raises(ValueError, match="sentiment classifier.*lm-quick"):
        export(trained_runs / "tiny", "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_bad_input_is_one_line_exit_2_and_nothing_is_left_half_written(run, tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.gguf"
    assert main([str(run), "--to", "gguf", str(target), "--type", "q4_1"]) == 0
    written = target.read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for argv in ([str(run), "--to", "gguf", str(target)],                              # exists, no --force
                 [str(tmp_path / "no-such-run"), "--to", "hf", str(tmp_path / "x")],
                 [str(broken), "--to", "hf", str(tmp_path / "y")],
                 [str(run), "--to", "hf", str(blocked / "inside")],                   # not a folder to write into
                 [str(run), "--to", "gguf", str(tmp_path / "z.gguf"), "--type", "q3_k"],
                 [str(run), "--to", "hf", str(tmp_path / "w"), "--type", "q8_0"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        error = capsys.readouterr().err
        assert stop.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error, (argv, error)
        if "no-such-run" in argv[0]:
            assert f"there is no run folder at {argv[0]}" in error, error       # a path, not a bad name
    assert target.read_bytes() == written
    import minitx.export.cli as cli

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "write_gguf", fails)
    with pytest.raises(SystemExit):
        main([str(run), "--to", "gguf", str(target), "--force"])
    assert target.read_bytes() == written                                          # the old file stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "broken", "out.gguf"]   # no temporary left
    assert main([str(run), "--to", "hf", str(tmp_path / "hf"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["bytes"] == sum(f.stat().st_size for f in (tmp_path / "hf").iterdir())


def test_an_exported_folder_is_made_as_the_user_s_umask_says(run, tmp_path):
    old = os.umask(0o027)
    try:
        export(run, "hf", tmp_path / "hf")
    finally:
        os.umask(old)
    assert (tmp_path / "hf").stat().st_mode & 0o777 == 0o750
