"""minitx: a small transformer encoder, built from scratch in PyTorch, to learn how attention works.

One idea a module: config, tokenizer, positional, attention, encoder, data,
train, checkpoint. Nothing here imports Streamlit; the app's pages call in.
"""

__version__ = "0.1.0"
