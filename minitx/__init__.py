"""minitx: a small transformer, encoder and decoder, built from scratch in PyTorch, to learn how it works.

One idea a module: config, tokenizer, data, positional, attention, block, encoder, decoder, swaps
(the functions a model looks up by name), generate and fast_decode (the decode engine), pretrained,
train, checkpoint. The app's side: runs (background runs) and launch (the process a run trains in);
labs (the learner's functions, judged) and sandbox (where the learner's code runs, confined). Nothing
here imports Streamlit; the app's pages call in.
"""

__version__ = "0.1.0"
