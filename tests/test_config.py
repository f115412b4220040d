import dataclasses
import re

import pytest

from minitx.config import ModelConfig, TrainConfig


def test_defaults_are_valid_and_derived_values_follow():
    cfg = ModelConfig(d_model=128, n_heads=8, n_kv_heads=2)
    assert cfg.head_dim == 16
    assert cfg.queries_per_kv == 4


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().d_model = 64


@pytest.mark.parametrize("changes, message", [
    (dict(d_model=100, n_heads=3), "d_model 100 is not divisible by n_heads 3"),
    (dict(n_heads=4, n_kv_heads=3), "n_kv_heads 3 does not divide n_heads 4"),
    (dict(n_heads=4, n_kv_heads=8), "n_kv_heads 8 does not divide n_heads 4"),
    (dict(pos_encoding="alibi"), "pos_encoding must be one of sinusoidal, rope, learned, none, not 'alibi'"),
    (dict(norm="batchnorm"), "norm must be one of layernorm, rmsnorm"),
    (dict(norm_position="middle"), "norm_position must be one of pre, post"),
    (dict(ffn="tanh"), "ffn must be one of relu, gelu, swiglu"),
    (dict(pooling="max"), "pooling must be one of mean, cls"),
    (dict(dropout=1.0), "dropout must be between 0 and below 1, not 1.0"),
    (dict(d_model=0), "d_model must be a whole number from 1 to 8,192, not 0"),
    (dict(n_layers=1.5), "n_layers must be a whole number from 1 to 96, not 1.5"),
    (dict(vocab_size=2), "vocab_size must be a whole number from 3 to 1,000,000, not 2"),
    (dict(d_model=36, n_heads=12, pos_encoding="rope"), "head_dim must be even; d_model 36 / n_heads 12 = 3"),
    (dict(rms_norm_eps=0.0), "rms_norm_eps must be a number from 1e-12 to 1.0, not 0.0"),
    (dict(rope_base=float("nan")), "rope_base must be a number from 1.0 to 1,000,000,000.0, not nan"),
    (dict(bias=1), "bias must be true or false, not 1"),
])
def test_model_config_errors_name_the_numbers(changes, message):
    with pytest.raises(ValueError) as error:
        ModelConfig(**changes)
    assert message in str(error.value)


@pytest.mark.parametrize("changes, message", [
    (dict(test_size=0), "test_size must be a whole number of at least 2, not 0"),
    (dict(train_size=10, val_fraction=0.05), "leaves 0 validation and 10 training reviews"),
    (dict(tokenizer="sentencepiece"), "tokenizer must be one of bpe, bytebpe, wordpiece, unigram, word, char"),
    (dict(tokenizer="bytebpe", vocab_size=200), "vocab_size 200 is too small for bytebpe"),
    (dict(lr=0), "lr must be a positive, finite number, not 0"),
    (dict(lr=float("nan")), "lr must be a positive, finite number"),
    (dict(epochs=0), "epochs must be a whole number from 1 to 1,000, not 0"),
    (dict(warmup_fraction=1.5), "warmup_fraction must be between 0 and below 1, not 1.5"),
    (dict(device="tpu"), "device must be one of auto, cpu, cuda, not 'tpu'"),
])
def test_train_config_errors_name_the_numbers(changes, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**changes)
    assert message in str(error.value)


def test_a_config_saved_before_the_pretrained_fields_builds_the_same_model():
    """config.json files written before rms_norm_eps, rope_base, bias and scale_embeddings
    existed load with minitx's own values: eps 1e-6, base 10,000, biases, embeddings times sqrt(D)."""
    from minitx.decoder import CausalLM

    old = {k: v for k, v in ModelConfig(task="lm", pos_encoding="rope", norm="rmsnorm").to_dict().items()
           if k not in ("rms_norm_eps", "rope_base", "bias", "scale_embeddings")}
    cfg = ModelConfig.from_dict(old)
    assert (cfg.rms_norm_eps, cfg.rope_base, cfg.bias, cfg.scale_embeddings) == (1e-6, 10_000.0, True, True)
    model = CausalLM(cfg)
    assert model.layers[0].attention.q_proj.bias is not None and model.embed_scale == cfg.d_model ** 0.5
    assert model.layers[0].attention_norm.eps == 1e-6
    llama = CausalLM(cfg.replace(bias=False, scale_embeddings=False, rms_norm_eps=1e-5))
    assert llama.layers[0].attention.q_proj.bias is None and llama.embed_scale == 1.0
    assert llama.layers[0].ffn_norm.eps == 1e-5
    assert sum(p.numel() for p in llama.parameters()) < sum(p.numel() for p in model.parameters())


def test_round_trip_through_a_dict_and_unknown_keys_rejected():
    cfg = ModelConfig(d_model=64, n_heads=4, n_kv_heads=1, pos_encoding="rope")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="has no field"):
        ModelConfig.from_dict({**cfg.to_dict(), "d_modle": 3})
    assert TrainConfig(train_size=None).train_size is None


@pytest.mark.parametrize("model_changes, train_changes, message", [
    ({}, dict(train_size=5001), "train_size 5001 is odd: a balanced subset"),
    ({}, dict(train_size=25_002), "train_size 25,002 is more than the 25,000 reviews there are"),
    (dict(task="lm"), dict(train_size=75_002), "train_size 75,002 is more than the 75,000"),
    ({}, dict(test_size=30_000), "test_size 30,000 is more than the 25,000"),
    (dict(d_model=8192, d_ff=65_536, n_layers=96), {}, "more than this machine's"),
])
def test_a_run_checks_what_configs_alone_cannot(model_changes, train_changes, message):
    from minitx.train import check_run

    with pytest.raises(ValueError, match=re.escape(message)):
        check_run(ModelConfig(**model_changes), TrainConfig(**train_changes))
    check_run(ModelConfig(task="lm"), TrainConfig(train_size=5001))        # a language model needs no balance
