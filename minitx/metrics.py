"""How good is a language model? Bits per character, and what ordinary compressors need.

A language model that gives the next token probability p can encode it in
-log2(p) bits (arithmetic coding gets within a hair of that), so a language
model *is* a compressor. Its cross-entropy in nats per token, times the number
of tokens, over the number of characters, divided by ln 2, is the bits per
character it would need: a number that does not depend on the tokenizer, and
that zlib (gzip), bz2 and xz can be measured on too. Plain text in UTF-8 takes
8 bits per character; a good model of English needs about 1.

Perplexity per token, exp(nats per token), is the same information in the
units most papers quote; it does depend on the tokenizer.
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections import Counter
from collections.abc import Sequence


def bits_per_char(total_nats: float, n_chars: int) -> float:
    """Total cross-entropy (nats, summed over every predicted token) per character, in bits."""
    if n_chars <= 0:
        raise ValueError(f"bits per character needs some characters, not {n_chars}.")
    return total_nats / n_chars / math.log(2)


def perplexity(total_nats: float, n_tokens: int) -> float:
    """exp(mean nats per token): how many tokens the model is, on average, choosing between."""
    return math.exp(total_nats / max(1, n_tokens))


def compressor_bits_per_char(text: str) -> dict[str, float]:
    """Bits per character that zlib, bz2 and xz (each at its strongest setting) need for text."""
    data, n = text.encode("utf-8"), max(1, len(text))
    return {"zlib": 8 * len(zlib.compress(data, 9)) / n,
            "bz2": 8 * len(bz2.compress(data, 9)) / n,
            "xz": 8 * len(lzma.compress(data, preset=9)) / n}


def unigram_bits_per_char(train_stream: Sequence[int], test_stream: Sequence[int], vocab_size: int,
                          n_chars: int) -> float:
    """The simplest language model: each token at its training frequency (add-one smoothed),
    ignoring context. Scored on every token of test_stream after the first, as the models are."""
    counts = Counter(train_stream)
    total = len(train_stream) + vocab_size
    nats = -sum(math.log((counts[t] + 1) / total) for t in test_stream[1:])
    return bits_per_char(nats, n_chars)
