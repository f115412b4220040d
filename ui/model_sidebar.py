"""The shared sidebar: "your model", one ModelConfig every page shows.

Every page calls `model_sidebar()` first. Each value is kept under its own
session_state key ("model_d_model", ...) that no widget owns, and copied into
its widget ("w_model_d_model") before the widget is drawn; the widget's
on_change copies it back. So the values survive page switches and reloads of
a page, whichever page draws the widgets. Choices are only ever valid ones:
heads are divisors of d_model, KV heads divisors of heads; a value that a
change made invalid is moved to the nearest valid one before it is drawn.
"""

from __future__ import annotations

import streamlit as st

from minitx.config import FFNS, NORM_POSITIONS, NORMS, POOLINGS, POS_ENCODINGS, ModelConfig
from minitx.presets import PRESETS
from ui.common import remembered

D_MODELS = [32, 64, 128, 256, 512]
HEADS = [1, 2, 4, 8, 16]
D_FFS = [64, 128, 256, 512, 1024, 2048]
MAX_LENS = [64, 128, 256, 400, 512]
EXPERTS = [2, 4, 8]
KEY = "model_{}".format
DEFAULT = PRESETS["quick"][0]   # the model the Quick preset trains


def divisors_among(n: int, candidates: list[int]) -> list[int]:
    return [c for c in candidates if n % c == 0]


def kv_head_choices(n_heads: int) -> list[int]:
    """Every divisor of n_heads: 1 (MQA) up to n_heads (MHA)."""
    return [g for g in range(1, n_heads + 1) if n_heads % g == 0]


def _remembered(name: str, options: list) -> dict:
    """Widget arguments for a remembered value, moved to a valid option first if it is not one."""
    value = st.session_state.get(KEY(name), getattr(DEFAULT, name))
    if value not in options:
        numeric = all(isinstance(o, int) for o in options) and isinstance(value, int)
        value = min(options, key=lambda o: abs(o - value)) if numeric else options[0]
    st.session_state[KEY(name)] = value
    return remembered(KEY(name), value)


def _select_slider(label: str, name: str, options: list, help: str | None = None):
    return st.select_slider(label, options=options, help=help, **_remembered(name, options))


def _selectbox(label: str, name: str, options: tuple[str, ...], help: str | None = None):
    return st.selectbox(label, options, help=help, **_remembered(name, list(options)))


def model_sidebar() -> ModelConfig:
    """Draw the "your model" controls in the sidebar and return the config they describe."""
    with st.sidebar:
        st.header("Your model")
        d_model = _select_slider("d_model (model size D)", "d_model", D_MODELS)
        n_heads = _select_slider("heads H", "n_heads", divisors_among(d_model, HEADS),
                                 help="Only divisors of d_model: every head gets d_model / H dimensions.")
        n_kv_heads = _select_slider("KV heads G", "n_kv_heads", kv_head_choices(n_heads),
                                    help="Only divisors of H. G = H is MHA, G = 1 is MQA, between is GQA.")
        n_layers = st.slider("layers", 1, 6, **_remembered("n_layers", list(range(1, 7))))
        d_ff = _select_slider("d_ff (feed-forward size)", "d_ff", D_FFS)
        max_len = _select_slider("max_len (tokens kept)", "max_len", MAX_LENS)
        pos_encoding = _selectbox("positional encoding", "pos_encoding", POS_ENCODINGS)
        norm = _selectbox("norm", "norm", NORMS)
        norm_position = _selectbox("norm position", "norm_position", NORM_POSITIONS)
        ffn = _selectbox("feed-forward", "ffn", FFNS,
                         help="moe: a mixture of experts, each token sent to its best few (SwiGLU experts).")
        n_experts = experts_per_token = None
        if ffn == "moe":
            n_experts = _select_slider("experts E", "n_experts", EXPERTS)
            experts_per_token = _select_slider("experts per token k", "experts_per_token",
                                               list(range(1, n_experts + 1)))
        pooling = _selectbox("pooling", "pooling", POOLINGS, help="How the encoder sums a review up.")
        cfg = ModelConfig(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, n_layers=n_layers,
                          d_ff=d_ff, max_len=max_len, pos_encoding=pos_encoding, norm=norm,
                          norm_position=norm_position, ffn=ffn, pooling=pooling,
                          n_experts=n_experts or DEFAULT.n_experts,
                          experts_per_token=experts_per_token or DEFAULT.experts_per_token,
                          dropout=DEFAULT.dropout, vocab_size=DEFAULT.vocab_size)
        st.caption(f"{cfg.attention_kind}: {n_heads} query heads share {n_kv_heads} key/value head(s); "
                   f"head size {cfg.head_dim}.")
    st.session_state["model_config"] = cfg
    return cfg
