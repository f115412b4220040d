"""Home: what the playground is. The concept pages come with the next issue."""

import streamlit as st

import minitx
from minitx.presets import PRESETS

st.title("minitx: build a transformer, then watch it learn")
st.markdown(
    "minitx is a small transformer encoder written from scratch in PyTorch, and a playground "
    "for understanding how it works. The concept pages (tokenization, embeddings, positional "
    "encoding, grouped-query attention, the encoder stack) and live training from the browser "
    "are on their way; the engine they use is ready and trains from the command line:")
st.code("python -m minitx.train --preset quick", language="bash")
st.caption(f"minitx {minitx.__version__} · presets: {', '.join(PRESETS)}")
