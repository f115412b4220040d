"""Labs about text: a byte-pair-encoding merge (tokenization page) and bits per character
(training page)."""

from __future__ import annotations

import math

from ... import bpe
from ...metrics import bits_per_char
from .. import pictures
from ..compare import Comparison, describe
from ..lab import Case, Lab, Mistake, Output
from .common import header

# -- bpe_merge -----------------------------------------------------------------------------

BPE_STUB = header("bpe_merge", "one merge of byte-pair encoding") + '''

def bpe_merge(words: dict[tuple[str, ...], int]) -> tuple[dict[tuple[str, ...], int], tuple[str, str]]:
    """One step of byte-pair encoding: the most frequent pair of neighbouring symbols becomes one.

    words    each word spelt in its current symbols, with how often it occurs:
             {("l", "o", "w"): 5, ("l", "o", "w", "e", "r"): 2, ("n", "e", "w"): 6}
    returns  the words with that pair merged, and the pair:
             ({("lo", "w"): 5, ("lo", "w", "e", "r"): 2, ("n", "e", "w"): 6}, ("l", "o"))

    A pair counts once per place it stands, times its word's count. Ties go to the pair counted
    first, going through the words in order and each word left to right. Merge left to right:
    ("a", "a", "a") with the pair ("a", "a") becomes ("aa", "a"). Leave `words` as it was.
    """
    raise NotImplementedError
'''


def _merge_with(words, best, merge_word):
    merged = {}
    for word, count in words.items():
        new = merge_word(word, best)
        merged[new] = merged.get(new, 0) + count
    return merged, best


def _unweighted(words):
    pairs = {}
    for word in words:
        for pair in zip(word, word[1:]):
            pairs[pair] = pairs.get(pair, 0) + 1
    return _merge_with(words, max(pairs, key=pairs.get), bpe.merge_pair)


def _per_word(words):
    pairs = {}
    for word, count in words.items():
        for pair in dict.fromkeys(zip(word, word[1:])):     # each pair once, in order
            pairs[pair] = pairs.get(pair, 0) + count
    return _merge_with(words, max(pairs, key=pairs.get), bpe.merge_pair)


def _overwritten(words):
    best = bpe.bpe_merge(words)[1]
    return {bpe.merge_pair(word, best): count for word, count in words.items()}, best


def _replaced_as_text(words):
    best = bpe.bpe_merge(words)[1]
    merged = {}
    for word, count in words.items():
        new = tuple(" ".join(word).replace(" ".join(best), "".join(best)).split(" "))
        merged[new] = merged.get(new, 0) + count
    return merged, best


def _right_to_left(word, pair):
    merged, i = [], len(word) - 1
    while i >= 0:
        if i > 0 and (word[i - 1], word[i]) == pair:
            merged.insert(0, word[i - 1] + word[i])
            i -= 2
        else:
            merged.insert(0, word[i])
            i -= 1
    return tuple(merged)


def _first_only(word, pair):
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (word[i] + word[i + 1],) + word[i + 2:]
    return word


def _counted_then(words, pick):
    """minitx's counting, then the pair that `pick` takes from the counts, merged everywhere."""
    pairs = bpe.pair_counts(words)
    return _merge_with(words, pick(pairs), bpe.merge_pair)


def _last_of_the_most_frequent(pairs):
    most = max(pairs.values())
    return [pair for pair, count in pairs.items() if count == most][-1]


def _merged_as_a_tuple(word, pair):
    """word[i:i + 2] is a tuple: the new symbol came out as ("l", "o"), not "lo"."""
    merged, i = [], 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            merged.append(word[i:i + 2])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def _tie_broken_otherwise(fn, case: Case, call) -> str | None:
    """The learner's pair is as frequent as minitx's, but another one: a tie broken another way."""
    pairs = bpe.pair_counts(case.args["words"])
    want, got = bpe.bpe_merge(case.args["words"])[1], call(fn, case)[1]
    if isinstance(got, tuple) and got != want and pairs.get(got) == pairs[want]:
        return (f"A tie broken another way: {got} and {want} both occur {pairs[want]} times. minitx keeps the "
                "pair counted first, going through the words in order and each word left to right, as "
                "`max(pairs, key=pairs.get)` on a dict filled in that order does.")
    return None


def bpe_cases() -> list[Case]:
    def case(label, words):
        return Case(label, {"words": {tuple(w) if isinstance(w, str) else w: n for w, n in words.items()}})

    return [
        case("low 5, lower 2, newest 6, widest 3 (Sennrich et al.'s example)",
             {"low": 5, "lower": 2, "newest": 6, "widest": 3}),
        case("counts decide, not the number of words: one frequent word beats several rare ones",
             {"ab": 1, "abx": 1, "aby": 1, "cd": 10}),
        case("a tie: every pair once", {"xy": 1, "zw": 1, "uv": 1}),
        case("a pair twice in a word, overlapping: a a a", {"aaa": 4, "ba": 1}),
        case("a pair twice in a word, apart", {"abcab": 3, "ab": 1}),
        case("symbols already merged", {("th", "e"): 9, ("th", "e", "n"): 3, ("o", "th", "e", "r"): 2, ("a",): 7}),
        case("a pair standing twice in one word counts twice: (a, a) in a a a 3 times is 6, more than b c's 5",
             {"aaa": 3, "bc": 5}),
        case("two words that become the same word: a b c and ab c are both ab c after merging (a, b)",
             {("a", "b", "c"): 2, ("ab", "c"): 3, ("a", "b"): 4}),
        case("the pair's characters side by side across a boundary: (wx, y) and (x, yz) hold no (x, y)",
             {("x", "y"): 5, ("wx", "y"): 2, ("x", "yz"): 1}),
    ]


def bpe_compare(spec, want, got) -> Comparison:
    if spec.name == "pair":
        same = want == got
        return Comparison(same, same, 0.0 if same else float("inf"),
                          f"You merged {describe(got)}; the pair to merge is {want}.")
    missing = [w for w in want if w not in got or got[w] != want[w]]
    if not missing and len(got) == len(want):
        return Comparison(True, True, 0.0, "the merged words are minitx's.")
    if missing:
        first = missing[0]
        text = (f"The merged words differ: minitx has {first} with count {want[first]}; yours "
                + (f"has count {got[first]}." if first in got else "does not have it."))
    else:
        extra = [w for w in got if w not in want]
        text = f"The merged words differ: yours has {extra[0]}, which minitx's does not."
    return Comparison(False, False, float("inf"), text)


def bpe_picture(case: Case, want, got) -> dict:
    words = list(case.args["words"])[:12]
    theirs = got[0] if isinstance(got[0], dict) else {}
    pair_got = got[1] if isinstance(got[1], tuple) and len(got[1]) == 2 else None
    rows = []
    for word in words:
        mine = bpe.merge_pair(word, want[1])
        yours = bpe.merge_pair(word, pair_got) if pair_got else None
        rows.append([" ".join(word), " ".join(mine), " ".join(yours) if yours and yours in theirs else "—"])
    return pictures.table(f"each word after the merge: minitx merges {want[1]}, you merged {got[1]}",
                          ["word", "minitx", "yours"], rows)


BPE_MERGE = Lab(
    name="bpe_merge", function="bpe_merge", title="One byte-pair-encoding merge", page="tokenization",
    task="A BPE tokenizer is trained by merging, again and again, the most frequent pair of "
         "neighbouring symbols into one new symbol. Write one merge step; the Tokenization page can "
         "then run your function to learn the first merges from IMDB.",
    stub=BPE_STUB, reference=bpe.bpe_merge, cases=bpe_cases,
    outputs=(Output("merged words", "dict[tuple[str, ...], int]", kind="value", dtype=None),
             Output("pair", "tuple[str, str]", kind="value", dtype=None)),
    answer=(bpe.pair_counts, bpe.merge_pair, bpe.bpe_merge),
    mistakes=(
        Mistake("Pairs were counted once per word: a pair counts as many times as its word occurs (add the "
                "word's count, not 1).", _unweighted),
        Mistake("A pair was counted once per word: it counts once for each place it stands (a a a holds "
                "(a, a) twice), times the word's count: go through every pair of `zip(word, word[1:])`.",
                _per_word),
        Mistake("Two words became the same word after the merge and one count replaced the other: add their "
                "counts (`merged[new] = merged.get(new, 0) + count`).", _overwritten),
        Mistake("The merge joined symbols across the boundary between two: (\"wx\", \"y\") is not the pair "
                "(\"x\", \"y\"), though \"wx y\" contains \"x y\" as text. Compare symbols, not text: "
                "walk the word and merge where `(word[i], word[i + 1]) == pair`.", _replaced_as_text),
        Mistake("Merged right to left: with the pair (\"a\", \"a\"), (\"a\", \"a\", \"a\") becomes "
                "(\"aa\", \"a\"), left to right.", lambda words: _merge_with(words, bpe.bpe_merge(words)[1],
                                                                              _right_to_left)),
        Mistake("Only the first place the pair stands in a word was merged: merge it everywhere, left to right.",
                lambda words: _merge_with(words, bpe.bpe_merge(words)[1], _first_only)),
        Mistake("The least frequent pair was merged: BPE merges the most frequent, `max(pairs, key=pairs.get)`.",
                lambda words: _counted_then(words, lambda pairs: min(pairs, key=pairs.get)), ("min",)),
        Mistake("A tie went to the pair counted last (a loop that takes a count >= the best so far): minitx keeps the "
                "first counted, as `max(pairs, key=pairs.get)` does (or `>` in your loop).",
                lambda words: _counted_then(words, _last_of_the_most_frequent), (">=",)),
        Mistake("The pair came back as one string, like \"lo\": return it as the two symbols, (\"l\", \"o\").",
                lambda words: (bpe.bpe_merge(words)[0], "".join(bpe.bpe_merge(words)[1])), ("join",)),
        Mistake("The merged symbol is a tuple, (\"l\", \"o\"): `word[i:i + 2]` slices a tuple. Join the two "
                "strings, `word[i] + word[i + 1]`.", lambda words: _merge_with(words, bpe.bpe_merge(words)[1],
                                                                                  _merged_as_a_tuple)),
    ),
    properties=(_tie_broken_otherwise,),
    compare=bpe_compare, picture=bpe_picture,
    hints=(
        "Count pairs in a dict: for each word and its count, for each `pair in zip(word, word[1:])`, add "
        "the count. `max(pairs, key=pairs.get)` is the first of the most frequent.",
        "Merge one word by walking it with an index: where `(word[i], word[i + 1])` is the pair, append "
        "`word[i] + word[i + 1]` and step 2; else append `word[i]` and step 1.",
        "Build a new dict (two words may become one: add their counts) and return it with the pair.",
    ),
)

# -- bits_per_char -------------------------------------------------------------------------

BPC_STUB = header("bits_per_char", "bits per character") + '''
import math


def bits_per_char(nats_per_token: float, n_tokens: int, n_chars: int) -> float:
    """How many bits per character a language model needs for a text: its cross-entropy, turned
    into a measure that does not depend on the tokenizer.

    nats_per_token  the mean cross-entropy per predicted token, in nats (natural logarithm)
    n_tokens        how many tokens were predicted
    n_chars         how many characters the text has
    returns bits per character: all the nats over all the characters, in bits (1 bit = ln 2 nats)
    """
    raise NotImplementedError
'''


def bpc_reference(nats_per_token, n_tokens, n_chars):
    return bits_per_char(nats_per_token * n_tokens, n_chars)


def bpc_cases() -> list[Case]:
    return [Case(label, {"nats_per_token": nats, "n_tokens": tokens, "n_chars": chars}) for label, nats, tokens, chars in (
        ("2.0 nats per token, 1,000 tokens, 4,000 characters", 2.0, 1_000, 4_000),
        ("1 nat per token, one token per character", 1.0, 10, 10),
        ("lm-quick's test text: 621,156 characters", 3.4, 150_000, 621_156),
        ("a perfect model: 0 nats", 0.0, 5, 7),
    )]


def bpc_picture(case: Case, want, got) -> dict:
    return pictures.table("bits per character", ["nats per token", "tokens", "characters", "minitx", "yours"],
                          [[*case.args.values(), f"{want[0]:.6g}", describe(got[0])]])


BITS_PER_CHAR = Lab(
    name="bits_per_char", function="bits_per_char", title="Bits per character", page="training",
    task="A language model that gives the next token probability p can encode it in −log₂ p bits. "
         "Its loss, in nats per token, becomes bits per character: a number you can put beside "
         "zlib's and xz's, whatever the tokenizer.",
    stub=BPC_STUB, reference=bpc_reference, cases=bpc_cases,
    outputs=(Output("bits per character", "a float", kind="number", dtype=None),),
    answer=(bpc_reference, bits_per_char),
    mistakes=(
        Mistake("Nats became bits the wrong way: a bit is ln 2 ≈ 0.693 nats, so divide by math.log(2).",
                lambda n, t, c: n * t / c * math.log(2)),
        Mistake("That is bits per token: multiply by the number of tokens and divide by the characters.",
                lambda n, t, c: n / math.log(2)),
        Mistake("That is nats per character: divide by math.log(2) for bits.", lambda n, t, c: n * t / c),
        Mistake("Divided by ln 10: bits are base-2 logarithms, so divide by math.log(2).",
                lambda n, t, c: n * t / c / math.log(10)),
        Mistake("Tokens and characters are the wrong way round: total nats (per token × tokens) over characters.",
                lambda n, t, c: n * c / t / math.log(2)),
        Mistake("The number of tokens was left out: all the nats are nats_per_token × n_tokens.",
                lambda n, t, c: n / c / math.log(2)),
        Mistake("n_tokens - 1: n_tokens already counts the predicted tokens; multiply by it as it is.",
                lambda n, t, c: n * (t - 1) / c / math.log(2), ("-",)),
        Mistake("The answer was rounded: return the whole float (round only where you print it).",
                lambda n, t, c: round(n * t / c / math.log(2), 2), ("round",)),
        Mistake("math.log2 of the nats is not their conversion: a number of nats becomes bits by dividing by "
                "ln 2, not by taking a logarithm.", lambda n, t, c: math.log2(n) * t / c if n else 0.0, ("log2",)),
        Mistake("That is characters per bit, upside down: bits (all the nats / ln 2) over characters.",
                lambda n, t, c: c * math.log(2) / (n * t) if n else math.inf, ("/",)),
    ),
    rtol=1e-9, atol=1e-12, picture=bpc_picture,
    hints=(
        "All the nats: `nats_per_token * n_tokens`.",
        "Per character: divide by `n_chars`.",
        "In bits: divide by `math.log(2)`.",
    ),
)
