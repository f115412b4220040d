"""Byte-pair encoding by hand: the loop a BPE tokenizer's trainer runs (Sennrich et al., 2016).

Start with every word spelt in single characters, each with how often it occurs:

    {("l", "o", "w"): 5, ("l", "o", "w", "e", "r"): 2, ("n", "e", "w"): 6}

Count every pair of neighbouring symbols, weighted by the word's count: ("l", "o") 7,
("o", "w") 7, ("n", "e") 6, ("e", "w") 6, ("w", "e") 2, ("e", "r") 2. The most frequent
pair becomes one new symbol wherever it stands ("lo"); repeat. Each merge is one new
vocabulary entry.
The tokenizers minitx trains (minitx.tokenizer, Hugging Face `tokenizers`) run this same
loop in Rust, with a faster pair count and their own way of breaking ties.

Ties go to the pair counted first (words in order, pairs left to right), which is what
`max(pairs, key=pairs.get)` in the paper's code does.
"""

from __future__ import annotations

import re
from collections import Counter

Words = dict[tuple[str, ...], int]


def pair_counts(words: Words) -> dict[tuple[str, str], int]:
    """How often each pair of neighbouring symbols occurs, each word weighted by its count,
    in the order the pairs are first met."""
    pairs: dict[tuple[str, str], int] = {}
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] = pairs.get(pair, 0) + count
    return pairs


def merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """The word with every occurrence of pair made one symbol, left to right: ("a", "a", "a")
    with ("a", "a") becomes ("aa", "a")."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def bpe_merge(words: Words) -> tuple[Words, tuple[str, str]]:
    """One merge step: the most frequent pair (ties: the first counted) and the words with it
    merged everywhere. The input is left as it was."""
    pairs = pair_counts(words)
    if not pairs:
        raise ValueError("no word has two symbols left: there is no pair to merge.")
    best = max(pairs, key=pairs.get)              # the first of the most frequent
    merged: Words = {}
    for word, count in words.items():
        new = merge_pair(word, best)
        merged[new] = merged.get(new, 0) + count
    return merged, best


def word_counts(texts: list[str], lowercase: bool = True) -> Words:
    """The words of some texts, each spelt in characters, with their counts, most frequent first.
    Words are runs of letters, digits and apostrophes; punctuation stands alone."""
    counts = Counter()
    for text in texts:
        counts.update(re.findall(r"[\w']+|[^\w\s]", text.lower() if lowercase else text))
    return {tuple(word): n for word, n in counts.most_common()}


def learn_merges(words: Words, n: int, merge=bpe_merge) -> list[tuple[str, str]]:
    """The first n merges, each from one call of `merge` (minitx's, or a learner's)."""
    merges = []
    for _ in range(n):
        if not any(len(word) > 1 for word in words):
            break
        words, pair = merge(words)
        merges.append(pair)
    return merges
