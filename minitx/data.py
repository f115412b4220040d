"""IMDB reviews in, padded batches of token ids out.

IMDB (Maas et al., 2011) has 25,000 training and 25,000 test reviews, half
positive and half negative, and the test movies are not the training movies.
The Hub stores each split sorted by label, so `train[:5000]` would be all
negative: subsets here are always balanced and drawn with a seeded shuffle.

Reviews vary from a dozen tokens to thousands. Two habits save most of the
compute a naive loader wastes:

- dynamic padding: pad each batch to its own longest review, not to max_len;
- length bucketing: batch reviews of similar length together, so that little
  padding is left at all (batches are still shuffled).

A language model needs no labels: it reads the 50,000 unlabelled reviews and
the training split's 25,000, packed end to end into one stream of tokens with
an end-of-review token between reviews, cut into blocks of the model's
context; it is scored on test reviews, which are about other movies.

The data source is the `MINITX_IMDB` environment variable (a local folder laid
out like the Hub dataset, or another Hub id), else "stanfordnlp/imdb".
"""

from __future__ import annotations

import functools
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .tokenizer import CLS_ID, PAD_ID, Tokenizer

DEFAULT_SOURCE = "stanfordnlp/imdb"
LABEL_NAMES = ("negative", "positive")
LM_SPLITS = ("unsupervised", "train")    # what a language model learns from: 75,000 reviews
LINE_BREAK = re.compile(r"<br\s*/?>")


class DataUnavailableError(RuntimeError):
    """IMDB could not be loaded; the message says how to make it loadable."""


def imdb_source() -> str:
    return os.environ.get("MINITX_IMDB") or DEFAULT_SOURCE


def load_imdb(source: str | None = None):
    """The IMDB `DatasetDict` (train, test, unsupervised) from `source` or `imdb_source()`;
    read once per process (the data is memory-mapped, so keeping it costs little)."""
    return _load_imdb(source or imdb_source())


@functools.lru_cache(maxsize=4)
def _load_imdb(source: str):
    import datasets  # imported here: it is slow to import, and most of minitx never needs it

    datasets.disable_progress_bars()  # our own progress bars are enough
    try:
        return datasets.load_dataset(source)
    except Exception as error:  # network, missing folder, bad layout: all end the same way
        raise DataUnavailableError(
            f"could not load the IMDB dataset from {source!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}). Either set "
            f"MINITX_IMDB to a local copy laid out like the Hub dataset "
            f"(for example MINITX_IMDB=../shared/data/imdb), or go online so that "
            f"{DEFAULT_SOURCE!r} can be downloaded.") from None


def balanced_indices(labels: Sequence[int], size: int | None, seed: int) -> list[int]:
    """A seeded, shuffled subset with the same number of rows from every class.

    size None takes every row (still shuffled).
    """
    rng = random.Random(seed)
    classes = sorted(set(labels))
    if size is None:
        picked = list(range(len(labels)))
    else:
        per_class, rest = divmod(size, len(classes))
        if rest:
            raise ValueError(f"a balanced subset of {size} rows cannot be split evenly "
                             f"over {len(classes)} classes.")
        picked = []
        for c in classes:
            rows = [i for i, label in enumerate(labels) if label == c]
            if per_class > len(rows):
                raise ValueError(f"a balanced subset of {size} rows needs {per_class} rows of "
                                 f"class {c}, but the split has only {len(rows)}.")
            picked += rng.sample(rows, per_class)
    rng.shuffle(picked)
    return picked


def split_validation(indices: Sequence[int], labels: Sequence[int], fraction: float,
                     seed: int) -> tuple[list[int], list[int]]:
    """Carve a balanced validation share out of a list of row indices: (train, validation)."""
    if fraction <= 0:
        return list(indices), []
    rng = random.Random(seed + 1)
    train, val = [], []
    for c in sorted({labels[i] for i in indices}):
        rows = [i for i in indices if labels[i] == c]
        rng.shuffle(rows)
        n_val = round(len(rows) * fraction)
        val += rows[:n_val]
        train += rows[n_val:]
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def truncate(ids: Sequence[int], max_tokens: int, how: str = "head_tail") -> list[int]:
    """Shorten a review to max_tokens ids.

    "head" keeps the beginning. "head_tail" keeps the first quarter and the
    rest from the end, where reviewers tend to sum up ("7/10, see it"): Sun et
    al. (2019) found head+tail beats head-only for long reviews.
    """
    ids = list(ids)
    if len(ids) <= max_tokens:
        return ids
    if how == "head":
        return ids[:max_tokens]
    if how != "head_tail":
        raise ValueError(f"truncation must be head or head_tail, not {how!r}.")
    head = max_tokens // 4
    return ids[:head] + ids[len(ids) - (max_tokens - head):]


@dataclass
class EncodedSplit:
    """Token ids ([CLS] first, truncated) and labels of a set of reviews, with their texts."""

    sequences: list[list[int]]
    labels: list[int]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_tokens(self) -> int:
        return sum(map(len, self.sequences))


def encode_split(tokenizer: Tokenizer, texts: Sequence[str], labels: Sequence[int],
                 max_len: int, truncation: str = "head_tail") -> EncodedSplit:
    """Tokenise texts and fit each into max_len ids: [CLS] plus at most max_len - 1 tokens."""
    if max_len < 2:
        raise ValueError(f"max_len {max_len} leaves no room for a token after [CLS].")
    sequences = [[CLS_ID] + truncate(ids, max_len - 1, truncation)
                 for ids in tokenizer.encode_batch(texts)]
    return EncodedSplit(sequences, list(labels), list(texts))


@dataclass
class Batch:
    ids: torch.Tensor       # (B, T), padded with PAD_ID to the batch's longest sequence
    labels: torch.Tensor    # (B,)
    rows: list[int]         # where each row came from in its EncodedSplit

    @property
    def n_tokens(self) -> int:
        """Real (non-pad) tokens in the batch."""
        return int((self.ids != PAD_ID).sum())

    def __len__(self) -> int:
        return self.ids.size(0)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> torch.Tensor:
    """Right-pad sequences to the longest one.  # list of B lists -> (B, T)"""
    longest = max(map(len, sequences))
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return ids


def _to_batch(split: EncodedSplit, rows: list[int]) -> Batch:
    return Batch(pad_batch([split.sequences[r] for r in rows]),
                 torch.tensor([split.labels[r] for r in rows]), rows)


def training_batches(split: EncodedSplit, batch_size: int, seed: int,
                     bucket: bool = True, bucket_batches: int = 50) -> list[Batch]:
    """One epoch of shuffled batches; with bucket=True, each batch holds similar lengths.

    Bucketing: shuffle, cut into chunks of bucket_batches * batch_size rows,
    sort each chunk by length, cut it into batches, then shuffle the batches.
    The seed makes the epoch reproducible; pass a different one every epoch.
    """
    rng = random.Random(seed)
    order = list(range(len(split)))
    rng.shuffle(order)
    batches_rows = []
    chunk = batch_size * bucket_batches if bucket else batch_size
    for start in range(0, len(order), chunk):
        rows = order[start:start + chunk]
        if bucket:
            rows.sort(key=lambda r: len(split.sequences[r]))
        batches_rows += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    rng.shuffle(batches_rows)
    return [_to_batch(split, rows) for rows in batches_rows]


def evaluation_batches(split: EncodedSplit, max_tokens: int = 16_384) -> list[Batch]:
    """Batches sorted by length, each holding about max_tokens padded tokens: no order needed."""
    order = sorted(range(len(split)), key=lambda r: len(split.sequences[r]))
    batches, rows = [], []
    for r in order:
        # sorted ascending, so the newest row is the longest: the padded size is len * count
        if rows and len(split.sequences[r]) * (len(rows) + 1) > max_tokens:
            batches.append(_to_batch(split, rows))
            rows = []
        rows.append(r)
    if rows:
        batches.append(_to_batch(split, rows))
    return batches


@dataclass
class TextSplit:
    texts: list[str]
    labels: list[int]


def column(split, name: str, rows: list[int] | None = None) -> list:
    """One column of a split (only `rows` of it, in that order) as a Python list, read through
    Arrow: reading a datasets Column row by row costs about a second per 25,000 reviews."""
    table = split.with_format("arrow")
    if rows is not None:
        if not rows:
            return []
        table = table.select(rows)
    return table[name].to_pylist()


def imdb_subsets(train_size: int | None, test_size: int | None, val_fraction: float,
                 seed: int, source: str | None = None) -> dict[str, TextSplit]:
    """Balanced, seeded train / validation / test reviews.

    The validation share is carved out of the training subset: model
    selection looks at it and never at the test set.
    """
    imdb = load_imdb(source)
    train_labels = column(imdb["train"], "label")
    test_labels = column(imdb["test"], "label")
    train_rows = balanced_indices(train_labels, train_size, seed)
    train_rows, val_rows = split_validation(train_rows, train_labels, val_fraction, seed)
    test_rows = balanced_indices(test_labels, test_size, seed)

    def take(split: str, rows: list[int], labels: list[int]) -> TextSplit:
        return TextSplit(column(imdb[split], "text", rows), [labels[r] for r in rows])

    return {"train": take("train", train_rows, train_labels),
            "val": take("train", val_rows, train_labels),
            "test": take("test", test_rows, test_labels)}


# -- a language model's text ---------------------------------------------------------------

def lm_texts(train_size: int | None, test_size: int | None, val_fraction: float, seed: int,
             source: str | None = None) -> dict[str, list[str]]:
    """Seeded reviews for a language model: train and val drawn from the unlabelled and training
    splits together (train_size of them; None: all 75,000), test from the test split."""
    imdb = load_imdb(source)
    sizes = [len(imdb[name]) for name in LM_SPLITS]
    rng = random.Random(seed)
    pool = list(range(sum(sizes)))
    rng.shuffle(pool)
    pool = pool[:train_size] if train_size else pool
    n_val = round(len(pool) * val_fraction)

    def texts(rows: list[int]) -> list[str]:
        """The rows of the pool (the splits of LM_SPLITS end to end), in the order given."""
        out, offset = {}, 0
        for name, size in zip(LM_SPLITS, sizes):
            mine = sorted(r for r in rows if offset <= r < offset + size)
            out.update(zip(mine, column(imdb[name], "text", [r - offset for r in mine])))
            offset += size
        return [out[r] for r in rows]

    n_test = len(imdb["test"])
    test_rows = rng.sample(range(n_test), test_size) if test_size else list(range(n_test))
    splits = {"train": texts(pool[n_val:]), "val": texts(pool[:n_val]), "test": column(imdb["test"], "text", test_rows)}
    # IMDB's paragraph breaks are <br /> tags: a language model reads them as the newlines they stand for
    # (the normalising tokenizers turn either into one space; a byte-level one keeps the newline)
    return {name: [LINE_BREAK.sub("\n", text) for text in split] for name, split in splits.items()}


def token_stream(sequences: Sequence[Sequence[int]], eos_id: int) -> list[int]:
    """Reviews end to end, each followed by the end-of-review token, which also starts the stream
    (so the first review's first token is predicted from "a review begins")."""
    stream = [eos_id]
    for ids in sequences:
        stream += list(ids) + [eos_id]
    return stream


def pack_blocks(stream: Sequence[int], block_len: int, keep_tail: bool = False) -> list[torch.Tensor]:
    """Blocks of block_len + 1 tokens: block_len inputs and, shifted by one, their targets.
    Consecutive blocks share one token, so every token but the first is a target exactly once.
    keep_tail keeps a shorter last block (evaluation must score every token; training need not)."""
    stream = torch.as_tensor(stream, dtype=torch.long)
    blocks = [stream[i: i + block_len + 1] for i in range(0, len(stream) - 1, block_len)]
    if blocks and len(blocks[-1]) < block_len + 1 and not keep_tail:
        blocks.pop()
    return blocks
