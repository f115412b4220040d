"""What a Llama file can hold, and a sentence for what it cannot: asked before anything is written."""

from __future__ import annotations

from ..config import ModelConfig
from ..tokenizer import Tokenizer

GGUF_TYPES = ("f32", "bf16", "q8_0", "q4_1", "q4_0")
EXPORTS = "the lm-quick preset exports (RoPE, pre-norm RMSNorm, SwiGLU, a byte-level BPE)"


def export_problem(cfg: ModelConfig, tokenizer: Tokenizer, to: str = "hf") -> str | None:
    """Why this model cannot be written as a Llama file ("hf" or "gguf"), in one sentence; None if it can."""
    if not cfg.is_lm:
        return f"this run is a sentiment classifier (an encoder); only a language model exports: {EXPORTS}."
    wrong = [(cfg.pos_encoding != "rope", f"{cfg.pos_encoding} positions (a Llama turns queries and keys by RoPE)"),
             (cfg.norm_position != "pre", "post-norm (a Llama normalises before each branch)"),
             (cfg.norm != "rmsnorm", f"{cfg.norm} (a Llama uses RMSNorm)"),
             (cfg.ffn == "moe", "a mixture of experts (minitx writes dense Llama files only: Mixtral's format has no "
                                "biases, which minitx's runs have by default)"),
             (cfg.ffn not in ("swiglu", "moe"), f"a {cfg.ffn} feed-forward (a Llama's is SwiGLU)"),
             (tokenizer.kind != "bytebpe", f"a {tokenizer.kind} tokenizer (a Llama file's is byte-level BPE)")]
    reasons = [reason for bad, reason in wrong if bad]
    if reasons:
        return f"this model cannot be written as a Llama: it has {' and '.join(reasons)}; {EXPORTS}."
    if to == "gguf" and tokenizer.lowercase:
        return ("this run's tokenizer lowercases text, which a GGUF file's byte-level BPE cannot say; export it "
                "to a Hugging Face folder instead, or train with lowercase off (lm-quick's default).")
    return None
