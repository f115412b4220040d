"""Shared, read-only objects the pages load lazily and cache: tokenizers, trained runs, data.

Nothing is loaded at import time: each loader runs the first time a page asks.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from minitx.checkpoint import LoadedRun, describe_runs, load_run, read_run_configs, run_folders
from minitx.config import BYTE_LEVEL_MIN_VOCAB
from minitx.data import DataUnavailableError, imdb_subsets
from minitx.tokenizer import Tokenizer, cached_tokenizer

SAMPLE_REVIEWS = 2_000


def checkpoints_dir() -> Path:
    """Where trained runs are: $MINITX_CHECKPOINTS, else checkpoints/ (where the CLI saves them)."""
    return Path(os.environ.get("MINITX_CHECKPOINTS") or "checkpoints")


@st.cache_data(show_spinner="Reading an IMDB sample...")
def imdb_sample(size: int = SAMPLE_REVIEWS, seed: int = 0) -> tuple[list[str], list[int]] | None:
    """A balanced sample of training reviews, or None when IMDB cannot be loaded."""
    try:
        split = imdb_subsets(size, 2, 0.0, seed)["train"]
    except DataUnavailableError:
        return None
    return split.texts, split.labels


@st.cache_data(show_spinner=False, max_entries=64)
def sample_lengths(kind: str, vocab_size: int, lowercase: bool, n_reviews: int = 500) -> list[int]:
    """minitx.inspect.review_lengths of n_reviews sample reviews under a sample-trained tokenizer, cached."""
    from minitx.inspect import review_lengths

    return review_lengths(trained_tokenizer(kind, vocab_size, lowercase), imdb_sample()[0][:n_reviews])


@st.cache_data(show_spinner=False, max_entries=64)
def sample_stats(kind: str, vocab_size: int, lowercase: bool, max_len: int, n_reviews: int = 500) -> dict:
    """minitx.inspect.tokenizer_stats of a sample-trained tokenizer over n_reviews reviews, cached."""
    from minitx.inspect import tokenizer_stats

    return tokenizer_stats(trained_tokenizer(kind, vocab_size, lowercase), imdb_sample()[0][:n_reviews], max_len)


@st.cache_data(show_spinner=False, max_entries=8)
def positivity(_tokenizer, tokenizer_key: str) -> dict[int, float] | None:
    """word_positivity over the IMDB sample, cached per tokenizer (named by tokenizer_key)."""
    from minitx.inspect import word_positivity

    sample = imdb_sample()
    return None if sample is None else word_positivity(_tokenizer, sample[0], sample[1], min_count=5)


def newest_run(task: str = "classify") -> tuple[LoadedRun | None, str | None]:
    """The newest readable run of this task ("classify" or "lm") in checkpoints/ and None, or
    None and why there is none."""
    problems = []
    for path in run_folders(checkpoints_dir()):
        try:
            if read_run_configs(path)[0].task != task:
                continue
            return loaded_run(str(path), path.stat().st_mtime), None
        except ValueError as error:
            problems.append(f"{path.name}: {error}")
    what = "language model" if task == "lm" else "classifier"
    if problems:
        return None, f"no readable trained {what} in checkpoints/ (" + "; ".join(problems[:2]) + ")"
    return None, f"no trained {what} in checkpoints/ yet"


def playground_tokenizer() -> tuple[Tokenizer | None, str]:
    """The tokenizer of the newest trained run, else one trained on an IMDB sample; and where it came from."""
    run, _ = newest_run()
    if run is not None:
        return run.tokenizer, f"the tokenizer of run {run.path.name}"
    tok = trained_tokenizer("word", 20_000, True)
    if tok is None:
        return None, "none: IMDB could not be loaded (set MINITX_IMDB to a local copy, or go online)"
    return tok, f"a word-level tokenizer trained on {SAMPLE_REVIEWS:,} IMDB reviews"


@st.cache_resource(show_spinner=False, max_entries=8)
def random_model(cfg):
    """A seeded, untrained model of this config, encoder or decoder (read-only: pages never train it)."""
    import torch

    from minitx.model import build_model

    torch.manual_seed(0)
    return build_model(cfg).eval()


def sentence_ids(text: str, max_tokens: int = 24, tokenizer: Tokenizer | None = None
                 ) -> tuple[list[int], list[str], str | None]:
    """[CLS] + the first tokens of text, with their token strings, and a note when cut or empty.

    The tokenizer defaults to playground_tokenizer(): the newest run's, else a sample-trained one.
    """
    from minitx.tokenizer import CLS_ID

    if tokenizer is None:
        tokenizer, origin = playground_tokenizer()
        if tokenizer is None:
            return [], [], f"No tokenizer available: {origin}."
    if not text.strip():
        return [], [], "Type some text to see it here."
    enc = tokenizer.encode(text)
    note = None
    if len(enc.ids) > max_tokens:
        note = f"Showing the first {max_tokens} of {len(enc.ids)} tokens, so the pictures stay readable."
    return [CLS_ID] + enc.ids[:max_tokens], ["[CLS]"] + enc.tokens[:max_tokens], note


def sentence_or_stop(text: str, max_tokens: int = 24, tokenizer: Tokenizer | None = None
                     ) -> tuple[list[int], list[str]]:
    """sentence_ids for a page: its note goes on the page, and an empty sentence ends the page there."""
    ids, tokens, note = sentence_ids(text, max_tokens, tokenizer)
    if not ids:
        st.info(note)
        st.stop()
    if note:
        st.caption(note)
    return ids, tokens


@st.cache_resource(show_spinner="Training the tokenizer on an IMDB sample...", max_entries=32)
def trained_tokenizer(kind: str, vocab_size: int, lowercase: bool, sample_size: int = SAMPLE_REVIEWS,
                      eos: bool = False):
    """A tokenizer of this kind trained on the IMDB sample (cached in memory and on disk); eos
    adds the end-of-review token a language model needs. A byte-level BPE has every byte from the
    start, so its vocabulary is never smaller than BYTE_LEVEL_MIN_VOCAB."""
    sample = imdb_sample(sample_size)
    if sample is None:
        return None
    if kind == "bytebpe":
        vocab_size = max(vocab_size, BYTE_LEVEL_MIN_VOCAB)
    return cached_tokenizer(kind, sample[0], vocab_size, lowercase, eos=eos)


@st.cache_data(show_spinner="Reading IMDB test reviews...")
def imdb_test_sample(size: int = 500, seed: int = 1) -> tuple[list[str], list[int]] | None:
    """A balanced sample of test reviews to draw from, or None when IMDB cannot be loaded."""
    try:
        split = imdb_subsets(2, size, 0.0, seed)["test"]
    except DataUnavailableError:
        return None
    return split.texts, split.labels


def saved_runs():
    """describe_runs of checkpoints/, read again only when a run folder or a file in one changes
    (a run's metrics.json holds its whole history: megabytes to parse on every rerun)."""
    directory = checkpoints_dir()
    signature = tuple((path.name, tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.iterdir())))
                      for path in run_folders(directory))
    return _described(str(directory), signature)


@st.cache_resource(show_spinner=False, max_entries=4)
def _described(directory: str, signature: tuple):
    return describe_runs(directory)


@st.cache_resource(show_spinner="Loading the run...", max_entries=4)
def loaded_run(path: str, modified: float) -> LoadedRun:
    """A saved run's model and tokenizer, cached until its folder changes."""
    return load_run(path)
