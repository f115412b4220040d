"""Tiny Llama checkpoints the tests write themselves: a Hugging Face folder and GGUF files of it.

No Hub and no wheel: transformers makes a small random LlamaForCausalLM and saves it; the GGUF
files hold the same weights the way llama.cpp's converter writes them (query/key rows interleaved
per head, names like blk.0.attn_q.weight), in float32 or quantized.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minitx.pretrained.convert import interleave_rope_rows
from minitx.tokenizer import Tokenizer

TEXTS = ["The capital of France is Paris.", "A quiet, moving story; the ending made me cry.",
         "Worst two hours of my life, don't bother. 10/10 would not watch again!"] * 30
TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
            "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def load_smollm2(tmp_path_factory, dtype: str = "fp32"):
    """SmolLM2 from the registry's wheel, its cache in this session's (never the user's); a skip without
    the wheel (a failure under CI=true, where .ci/run installs it)."""
    from minitx.pretrained import KNOWN_MODELS, load_pretrained, wheel_file
    from tests.conftest import skip_or_fail

    known = KNOWN_MODELS["smollm2-135m"]
    if wheel_file(known) is None:
        skip_or_fail(f"the SmolLM2 wheel is not installed ({known.install_command})")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINITX_CACHE", str(tmp_path_factory.getbasetemp() / "minitx-cache"))
        return load_pretrained("smollm2-135m", dtype=dtype)


def tiny_tokenizer():
    """A byte-level BPE of about 320 pieces with SmolLM2's special tokens at ids 0, 1, 2."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as Backend

    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[AddedToken(t, special=True) for t in SPECIALS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(TEXTS, trainer)
    return Tokenizer(backend, {"eos": "<|im_end|>", "end_of_text": "<|endoftext|>", "unk": "<|endoftext|>"})


def tiny_llama(vocab_size: int, seed: int = 0, **changes):
    """A random transformers LlamaForCausalLM: 2 layers, 4 query heads sharing 2 key/value heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                    rope_theta=100_000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    settings.update(changes)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings)).eval()
    with torch.no_grad():          # random norm gains, so a wrong eps or a missed norm shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def write_hf_folder(folder: Path, model, tokenizer: Tokenizer) -> Path:
    """What save_pretrained and a tokenizer leave on disk: config.json, model.safetensors, tokenizer files."""
    model.save_pretrained(folder)
    tokenizer.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "bos_token": "<|im_start|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>",
        "add_bos_token": False, "chat_template": TEMPLATE}))
    return folder


def tiny_checkpoints(folder: Path, ggufs: dict[str, tuple[str, str | None]]) -> tuple:
    """A random tiny Llama and its tokenizer, written into folder as a Hugging Face folder ("hf") and as GGUF
    files {file name: (matrices' type, embedding's type or None for the same)}. -> (model, tokenizer)"""
    tokenizer = tiny_tokenizer()
    model = tiny_llama(tokenizer.vocab_size)
    write_hf_folder(folder / "hf", model, tokenizer)
    for name, (quantization, embedding) in ggufs.items():
        write_gguf(folder / name, model, tokenizer, quantization, embedding)
    return model, tokenizer


def write_gguf(path: Path, model, tokenizer: Tokenizer, quantization: str = "F32", embedding: str | None = None) -> Path:
    """The model as llama.cpp's converter writes it: matrices in `quantization` (F32, Q8_0, Q4_1, ...), the
    embedding in `embedding` (by default the same), norms in F32."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    spec = json.loads(tokenizer.backend.to_str())
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token in SPECIALS else 1 for token, _ in vocab])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)
    quantized = gguf.GGMLQuantizationType[quantization]
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for i in range(cfg.num_hidden_layers):
        for hf, ours in (("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                         ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                         ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"),
                         ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")):
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{ours}.weight"
    for hf_name, tensor in model.state_dict().items():
        if hf_name not in names:
            continue                                    # the tied lm_head
        tensor = tensor.float()
        if hf_name.endswith(("q_proj.weight", "k_proj.weight")):   # llama.cpp interleaves each head's pairs
            heads = cfg.num_attention_heads if "q_proj" in hf_name else cfg.num_key_value_heads
            tensor = interleave_rope_rows(tensor, heads)
        array = tensor.numpy()
        kind = gguf.GGMLQuantizationType[embedding] if embedding and "embed" in hf_name else quantized
        if tensor.dim() == 2 and kind != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(names[hf_name], gguf.quants.quantize(array, kind), raw_dtype=kind)
        else:
            writer.add_tensor(names[hf_name], array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
