"""Configuration: two frozen dataclasses, validated once when they are made.

`ModelConfig` says what the network looks like; `TrainConfig` says how it is
trained and on which data. Both are plain values: they are saved whole into a
run's `config.json` and a checkpoint is rebuilt with `ModelConfig(**saved)`.
A config that cannot work raises `ValueError` with a sentence that names the
offending numbers, so a learner moving a slider knows what to change.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

POS_ENCODINGS = ("sinusoidal", "rope", "learned", "none")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
FFNS = ("relu", "gelu", "swiglu", "moe")
TASKS = ("classify", "lm")
POOLINGS = ("mean", "cls")

TOKENIZER_KINDS = ("bpe", "bytebpe", "wordpiece", "unigram", "word", "char")
BYTE_LEVEL_MIN_VOCAB = 256 + 4 + 1   # bytebpe: every byte is a token, then the special tokens, then a merge
TRUNCATIONS = ("head", "head_tail")
LR_SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")


# The field table the command line (every field a flag, minitx.cli) and the Training page (the knobs it
# shows) both read: each field's choices, and what it means where its name does not say.
CHOICES = {"pos_encoding": POS_ENCODINGS, "norm": NORMS, "norm_position": NORM_POSITIONS,
           "ffn": FFNS, "pooling": POOLINGS, "tokenizer": TOKENIZER_KINDS,
           "truncation": TRUNCATIONS, "lr_schedule": LR_SCHEDULES, "device": DEVICES, "task": TASKS,
           "precision": PRECISIONS}
HELP = {
    "task": "classify (sentiment, the encoder) or lm (a language model, the decoder)",
    "n_kv_heads": "key/value heads: n_heads = MHA, 1 = MQA, a divisor between = GQA",
    "ffn": "feed-forward: relu, gelu, swiglu, or moe (a mixture of SwiGLU experts)",
    "n_experts": "experts of a mixture-of-experts feed-forward (--ffn moe)",
    "experts_per_token": "experts each token is routed to (--ffn moe)",
    "moe_loss_weight": "weight of the load-balancing loss added to the training loss (--ffn moe)",
    "train_size": "training reviews (validation included; balanced for classify), or 'all'",
    "test_size": "test reviews (balanced for classify), or 'all' for the full 25,000",
    "vocab_size": "vocabulary size asked of the tokenizer",
    "truncation": "which tokens a long review keeps",
    "warmup_fraction": "share of all steps spent warming the learning rate up",
    "min_lr_fraction": "where the cosine schedule ends, as a share of the learning rate (0: at 0)",
    "random_windows": "language models: each batch takes windows at random places in the text, not fixed blocks",
    "grad_clip": "max gradient norm, 0 = off",
    "word_dropout": "share of training tokens replaced by [UNK]",
    "patience": "epochs without a better validation accuracy before stopping; 0 = never",
    "eval_every": "also evaluate every N steps; 0 = at epoch ends only",
    "threads": "CPU threads, or 'all' (under torchrun: the cores shared out among its processes)",
    "precision": "fp32; bf16 or fp16 run the forward pass in autocast (fp16 on a CUDA GPU only)",
}


# The whole-number and real-number fields, with the smallest and largest value each may take
# (None: no upper limit). The command line and its tests read the same table.
MODEL_LIMITS = {"vocab_size": (3, 1_000_000), "d_model": (1, 8192), "n_heads": (1, 1024),
                "n_kv_heads": (1, 1024), "n_layers": (1, 96), "d_ff": (1, 65_536),
                "max_len": (2, 16_384), "n_experts": (1, 64), "experts_per_token": (1, 64),
                "rms_norm_eps": (1e-12, 1.0), "rope_base": (1.0, 1e9)}
MODEL_REALS = ("rms_norm_eps", "rope_base")      # real numbers; the rest of MODEL_LIMITS are whole
TRAIN_LIMITS = {"train_size": (2, None), "test_size": (2, None), "vocab_size": (10, 1_000_000),
                "epochs": (1, 1000), "batch_size": (1, 4096), "patience": (0, None),
                "eval_every": (0, None), "seed": (0, 2**32 - 1), "threads": (1, 1024),
                "weight_decay": (0.0, 10.0), "grad_clip": (0.0, 1000.0), "moe_loss_weight": (0.0, 10.0)}


# Fields that are shares, from 0 up to (not including) 1.
FRACTIONS = ("dropout", "attention_dropout", "val_fraction", "warmup_fraction", "word_dropout", "min_lr_fraction")


def _within(name: str, value, limits: dict, whole: bool = True) -> None:
    """A whole (or finite real) number between the limits of `name`, else a ValueError saying so."""
    low, high = limits[name]
    kinds = int if whole else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and low <= value and (high is None or value <= high)):
        kind = "a whole number" if whole else "a number"
        span = f"of at least {low:,}" if high is None else f"from {low:,} to {high:,}"
        raise ValueError(f"{name} must be {kind} {span}, not {value!r}.")


def _fraction(name: str, value, *, upper_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and 0.0 <= value and (value < 1.0 if upper_open else value <= 1.0)
    if not ok:
        bound = "below 1" if upper_open else "at most 1"
        raise ValueError(f"{name} must be between 0 and {bound}, not {value!r}.")


class _Config:
    """Shared helpers: build from a dict that may carry unknown keys, copy with changes."""

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}.")
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelConfig(_Config):
    """The shape of the network, and which of the two it is.

    `task` lives here, not beside the config, because it decides the network
    itself: "classify" is the encoder (every token sees every other, pooled into
    class logits), "lm" the decoder (a causal mask, next-token logits from the
    embedding table). A saved config.json must name it for the model to be
    rebuilt. Derived values (`head_dim`, `queries_per_kv`) are properties,
    never stored, so they cannot disagree with the numbers they come from.
    """

    task: str = "classify"
    vocab_size: int = 20_000
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 4          # n_heads = MHA, 1 = MQA, anything between = GQA
    n_layers: int = 1
    d_ff: int = 512
    max_len: int = 512           # longest sequence the model accepts, [CLS] included
    dropout: float = 0.1         # on embeddings, residual branches and the classifier
    attention_dropout: float = 0.0  # on attention weights; slows the fused path on CPU
    pos_encoding: str = "sinusoidal"
    norm: str = "layernorm"
    norm_position: str = "pre"
    ffn: str = "relu"            # "moe": a mixture of SwiGLU experts (below)
    n_experts: int = 4
    experts_per_token: int = 2
    pooling: str = "mean"        # classify only
    n_classes: int = 2           # classify only
    pad_id: int = 0
    # What a pretrained Llama-family checkpoint fixes differently (minitx.pretrained); the
    # defaults are minitx's own, so every preset and saved run builds exactly as before.
    rms_norm_eps: float = 1e-6   # inside RMSNorm's root; Llama-family models use 1e-5
    rope_base: float = 10_000.0  # RoPE's slowest wavelength is 2π x base; SmolLM2 uses 100,000
    bias: bool = True            # biases on the linear layers; Llama-family models have none
    scale_embeddings: bool = True  # token vectors times sqrt(D); Llama does not scale them

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def queries_per_kv(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def attention_kind(self) -> str:
        """MHA (every query head has its own K/V), MQA (one K/V for all), or GQA in between."""
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    @property
    def is_lm(self) -> bool:
        return self.task == "lm"

    def summary(self) -> str:
        """One line for a table: d128 · 4 heads / 2 KV (GQA) · 1 layer · sinusoidal · pre-layernorm."""
        layers = f"{self.n_layers} layer{'s' if self.n_layers > 1 else ''}"
        ffn = f"moe {self.experts_per_token} of {self.n_experts}" if self.ffn == "moe" else self.ffn
        head = "causal LM" if self.is_lm else f"{self.pooling} pool"
        return (f"d{self.d_model} · {self.n_heads} heads / {self.n_kv_heads} KV ({self.attention_kind})"
                f" · {layers} · {self.pos_encoding} · {self.norm_position}-{self.norm} · {ffn} · {head}")

    def validate(self) -> None:
        for name in MODEL_LIMITS:          # max_len 2 at least: [CLS] and one token
            _within(name, getattr(self, name), MODEL_LIMITS, whole=name not in MODEL_REALS)
        for name in ("bias", "scale_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}.")
        if not isinstance(self.n_classes, int) or isinstance(self.n_classes, bool) or self.n_classes < 2:
            raise ValueError(f"n_classes must be a whole number of at least 2, not {self.n_classes!r}.")
        if not isinstance(self.pad_id, int) or isinstance(self.pad_id, bool) \
                or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}.")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}: "
                f"every head needs the same size.")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_kv_heads {self.n_kv_heads} does not divide n_heads {self.n_heads}: "
                f"each key/value head must serve the same number of query heads.")
        _fraction("dropout", self.dropout)
        _fraction("attention_dropout", self.attention_dropout)
        _one_of("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _one_of("norm", self.norm, NORMS)
        _one_of("norm_position", self.norm_position, NORM_POSITIONS)
        _one_of("ffn", self.ffn, FFNS)
        _one_of("pooling", self.pooling, POOLINGS)
        _one_of("task", self.task, TASKS)
        if self.experts_per_token > self.n_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} is more than n_experts "
                             f"{self.n_experts}: each token goes to some of the experts.")
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ValueError(
                f"RoPE rotates pairs of dimensions, so head_dim must be even; "
                f"d_model {self.d_model} / n_heads {self.n_heads} = {self.head_dim}.")
        if self.pos_encoding == "sinusoidal" and self.d_model % 2:
            raise ValueError(
                f"the sinusoidal table pairs sine and cosine, so d_model must be even, "
                f"not {self.d_model}.")


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How to train: the data subset, the tokenizer, the optimiser and its schedule.

    Sizes count reviews: for classification, a balanced subset of IMDB's training
    (and test) reviews; for a language model, reviews drawn from the 75,000 it reads
    (the unlabelled 50,000 and the training split's 25,000), scored on test reviews.
    """

    train_size: int | None = 5_000   # balanced subset of IMDB train; None = all 25,000
    test_size: int | None = 5_000    # balanced subset of IMDB test; None = all 25,000
    val_fraction: float = 0.1        # carved from the training subset, for model selection
    tokenizer: str = "word"
    vocab_size: int = 20_000         # asked of the tokenizer; the model gets the size it reached
    lowercase: bool = True
    truncation: str = "head_tail"    # keep the first tokens, or the first and the last
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_fraction: float = 0.1     # of all steps, linear from 0 to lr
    min_lr_fraction: float = 0.1     # the cosine's floor, a share of lr (0.1: quick 0.8634, lm-quick 1.922; 0: 0.8614, 1.940)
    random_windows: bool = False     # language models: batches of windows at random places, not fixed blocks
    weight_decay: float = 0.01
    grad_clip: float = 1.0           # max gradient norm; 0 turns clipping off
    word_dropout: float = 0.0        # training tokens replaced by [UNK] at this rate
    patience: int = 0                # epochs without a better validation accuracy; 0 = never stop early
    eval_every: int = 0              # also evaluate every N steps; 0 = only at epoch ends
    seed: int = 0
    moe_loss_weight: float = 0.01    # the load-balancing loss's weight, for mixture-of-experts models
    device: str = "auto"
    precision: str = "fp32"          # bf16 or fp16: the forward pass in autocast (fp16 on a GPU only)
    threads: int | None = None       # CPU threads; None = every core (shared out among torchrun's processes)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None:
                _within(name, value, TRAIN_LIMITS)
        _fraction("val_fraction", self.val_fraction)
        if self.train_size is not None and self.val_fraction > 0:
            n_val = round(self.train_size * self.val_fraction)
            if n_val < 2 or self.train_size - n_val < 2:
                raise ValueError(
                    f"val_fraction {self.val_fraction} of train_size {self.train_size} leaves "
                    f"{n_val} validation and {self.train_size - n_val} training reviews; "
                    f"each needs at least 2.")
        _one_of("tokenizer", self.tokenizer, TOKENIZER_KINDS)
        if self.tokenizer == "bytebpe" and self.vocab_size < BYTE_LEVEL_MIN_VOCAB:
            raise ValueError(f"vocab_size {self.vocab_size} is too small for bytebpe: each of the 256 bytes "
                             f"is a token from the start, so it needs at least {BYTE_LEVEL_MIN_VOCAB}.")
        _one_of("truncation", self.truncation, TRUNCATIONS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        for name in ("vocab_size", "epochs", "batch_size", "patience", "eval_every", "seed"):
            _within(name, getattr(self, name), TRAIN_LIMITS)
        if self.threads is not None:
            _within("threads", self.threads, TRAIN_LIMITS)
        for name in ("weight_decay", "grad_clip", "moe_loss_weight"):
            _within(name, getattr(self, name), TRAIN_LIMITS, whole=False)
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) \
                or not 0 < self.lr < math.inf:       # NaN fails this too
            raise ValueError(f"lr must be a positive, finite number, not {self.lr!r}.")
        _fraction("warmup_fraction", self.warmup_fraction)
        _fraction("min_lr_fraction", self.min_lr_fraction)
        _fraction("word_dropout", self.word_dropout)
