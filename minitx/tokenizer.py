"""Tokenizers: how raw text becomes the integer ids a model can look up.

A thin wrapper around Hugging Face `tokenizers`, which does the heavy lifting
in Rust. Five kinds, from coarse to fine:

- word:      one id per word or run of punctuation; unseen words become [UNK]
- wordpiece: words split into pieces, later pieces marked "##" (BERT, Schuster & Nakajima 2012)
- bpe:       start from characters, repeatedly merge the most frequent pair (Sennrich et al. 2016)
- bytebpe:   BPE on the text's UTF-8 bytes (GPT-2, Radford et al. 2019): nothing is ever
             unknown, and decoding gives back the very text, newlines and emoji included
- unigram:   keep the pieces that best explain the text under a unigram model (Kudo 2018)
- char:      one id per character

Every kind shares three special tokens, always with the same ids:
[PAD] = 0 fills short sequences, [UNK] = 1 stands for anything unknown,
[CLS] = 2 starts every sequence (its final state can summarise the review).
A language model's tokenizer has a fourth, [EOS] = 3, the end of a review
(and so the start of the next one).
Text is cleaned the same way by every kind but bytebpe: IMDB's `<br />` tags
become spaces, Unicode is NFKC-normalised, runs of white space become one
space and, optionally, letters are lowercased. bytebpe keeps the text as it
is (lowercasing only if asked), so `decode(encode(text)) == text`.

A pretrained model's tokenizer (SmolLM2's, from minitx.pretrained) is wrapped
by the same class with its own special tokens, named by role.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as BackendTokenizer

from .config import BYTE_LEVEL_MIN_VOCAB, TOKENIZER_KINDS

PAD, UNK, CLS, EOS = "[PAD]", "[UNK]", "[CLS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, CLS]          # trainers give them ids 0, 1, 2 in this order (and [EOS] 3)
PAD_ID, UNK_ID, CLS_ID, EOS_ID = 0, 1, 2, 3
CACHE_VERSION = "1"                       # bump when the recipe below changes


@dataclass
class Encoded:
    """One text, tokenised: ids, the tokens they stand for, and where each came from in the text."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]        # character span (start, end) in the original text


def _normalizer(kind: str, lowercase: bool) -> normalizers.Normalizer | None:
    if kind == "bytebpe":                     # the text as it is: nothing to lose on the way back
        return normalizers.Lowercase() if lowercase else None
    steps = [normalizers.Replace(Regex(r"<br\s*/?>"), " "), normalizers.NFKC(),
             normalizers.Replace(Regex(r"\s+"), " ")]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _build(kind: str, vocab_size: int, specials: list[str]) -> tuple[BackendTokenizer, trainers.Trainer]:
    """An untrained backend tokenizer of this kind and the trainer that fills its vocabulary."""
    common = dict(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    if kind == "word":
        tok = BackendTokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()       # words, and runs of punctuation
        trainer = trainers.WordLevelTrainer(min_frequency=2, **common)
    elif kind == "char":
        tok = BackendTokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        trainer = trainers.WordLevelTrainer(**common)
    elif kind == "wordpiece":
        tok = BackendTokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(continuing_subword_prefix="##", **common)
    elif kind == "bpe":
        tok = BackendTokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()        # a word's start is marked "▁"
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(min_frequency=2, limit_alphabet=1000, **common)
    elif kind == "bytebpe":
        # every byte has a token from the start (a printable stand-in each, "Ġ" for a space),
        # so any text can be spelled; merges are learnt within the words GPT-2's rule splits off
        tok = BackendTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      **common)
    elif kind == "unigram":
        tok = BackendTokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    else:
        raise ValueError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, not {kind!r}.")
    return tok, trainer


def _kind_of(backend: BackendTokenizer) -> str:
    """Recover our kind name from a saved tokenizer (word and char share the WordLevel model,
    bpe and bytebpe the BPE model)."""
    spec = json.loads(backend.to_str())
    model = spec["model"]["type"]
    if model == "WordLevel":
        return "char" if spec["pre_tokenizer"]["type"] == "Split" else "word"
    if model == "BPE" and (spec.get("decoder") or {}).get("type") == "ByteLevel":
        return "bytebpe"
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(model)
    if kind is None:
        raise ValueError(f"a {model} tokenizer is not one minitx knows.")
    return kind


class Tokenizer:
    """Text to ids and back, with our special tokens at fixed ids (or a pretrained model's, by role)."""

    def __init__(self, backend: BackendTokenizer, specials: dict[str, str] | None = None,
                 start: Sequence[str] = ()):
        """specials is None for minitx's own tokenizers: [PAD], [UNK], [CLS] must sit at ids 0, 1, 2,
        and [EOS], if there, at 3; a language model's text then starts after an [EOS]. A pretrained
        model's tokenizer names its own by role instead ({"eos": "<|im_end|>", ...}: roles pad,
        unk, cls, eos, end_of_text) and the tokens every text starts with (none for SmolLM2)."""
        if specials is None:
            for token, expected in zip(SPECIAL_TOKENS, (PAD_ID, UNK_ID, CLS_ID)):
                if backend.token_to_id(token) != expected:
                    raise ValueError(f"this tokenizer does not have {token} at id {expected}.")
            if backend.token_to_id(EOS) not in (None, EOS_ID):
                raise ValueError(f"this tokenizer has {EOS} at id {backend.token_to_id(EOS)}, not {EOS_ID}.")
            specials = {"pad": PAD, "unk": UNK, "cls": CLS}
            if backend.token_to_id(EOS) is not None:
                specials["eos"], start = EOS, (EOS,)
        for role, token in specials.items():
            if backend.token_to_id(token) is None:
                raise ValueError(f"this tokenizer has no {token!r} for its {role} token.")
        backend.encode_special_tokens = True     # "[PAD]" or "<|im_end|>" typed in a text is text
        self.backend = backend
        self.kind = _kind_of(backend)
        self.specials = dict(specials)
        self.pad_id, self.unk_id, self.cls_id = (self._id_of(role) for role in ("pad", "unk", "cls"))
        self.start_ids = [backend.token_to_id(token) for token in start]

    # -- making one ---------------------------------------------------------------

    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int,
              lowercase: bool = True, eos: bool = False) -> "Tokenizer":
        """Learn a vocabulary of at most vocab_size entries from texts; eos adds [EOS] at id 3."""
        specials = SPECIAL_TOKENS + [EOS] if eos else SPECIAL_TOKENS
        if vocab_size < len(specials) + 1:
            raise ValueError(f"vocab_size {vocab_size} leaves no room beside the "
                             f"{len(specials)} special tokens.")
        if kind == "bytebpe" and vocab_size < BYTE_LEVEL_MIN_VOCAB:
            raise ValueError(f"vocab_size {vocab_size} is too small for bytebpe: each of the 256 bytes is a "
                             f"token from the start, so it needs at least {BYTE_LEVEL_MIN_VOCAB}.")
        backend, trainer = _build(kind, vocab_size, specials)
        backend.normalizer = _normalizer(kind, lowercase)
        backend.train_from_iterator(texts, trainer)
        return cls(backend)

    @classmethod
    def from_str(cls, text: str) -> "Tokenizer":
        try:
            backend = BackendTokenizer.from_str(text)
        except Exception as error:  # the Rust side raises its own exception type
            raise ValueError(f"not a valid tokenizer description: {error}") from None
        return cls(backend)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read tokenizer file {path}: {error}") from None
        try:
            return cls.from_str(text)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def to_str(self) -> str:
        return self.backend.to_str()

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_str(), encoding="utf-8")

    # -- using one ----------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def _id_of(self, role: str) -> int | None:
        token = self.specials.get(role)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def eos_id(self) -> int | None:
        """The id that ends a text: [EOS] (3), a pretrained model's end of turn, or None for a
        tokenizer without one (a classifier's)."""
        return self._id_of("eos")

    @property
    def stop_ids(self) -> list[int]:
        """Every id that ends a generation: the end of a text, and a pretrained model's end of
        document if it has one besides."""
        ids = [self._id_of(role) for role in ("eos", "end_of_text")]
        return list(dict.fromkeys(i for i in ids if i is not None))

    @property
    def lowercase(self) -> bool:
        steps = json.loads(self.to_str()).get("normalizer") or {}
        steps = steps.get("normalizers", [steps])
        return any(step.get("type") == "Lowercase" for step in steps)

    def encode(self, text: str) -> Encoded:
        """Tokens of one text, with ids and character offsets; no special tokens added, and none
        read from the text (a special token's name in it is spelled like any other text)."""
        enc = self.backend.encode(text, add_special_tokens=False)
        return Encoded(list(enc.ids), list(enc.tokens), [tuple(o) for o in enc.offsets])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of many texts at once, in parallel; the fast path for whole datasets."""
        return [enc.ids for enc in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """The text of ids; special tokens are left out unless asked for."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def normalize(self, text: str) -> str:
        """The text as the model sees it: `<br />` as spaces, NFKC, runs of spaces as one (and
        lowercased, if this tokenizer lowercases); bytebpe's is the text itself."""
        normalizer = self.backend.normalizer
        return text if normalizer is None else normalizer.normalize_str(text)

    def piece(self, token_id: int) -> str:
        """How a token reads in running text: BPE's and Unigram's "▁" is a space, WordPiece's "##"
        joins the word before, a word is preceded by a space, a character is itself; a byte-level
        token is its bytes as text ("\ufffd" for part of a character that other tokens finish)."""
        token = self.backend.id_to_token(token_id) or ""
        if token == EOS:
            return "\n"
        if self.kind == "bytebpe":
            return self.backend.decode([token_id], skip_special_tokens=False)
        if self.kind in ("bpe", "unigram"):
            return token.replace("▁", " ")
        if self.kind == "wordpiece":
            return token[2:] if token.startswith("##") else " " + token
        return " " + token if self.kind == "word" else token

    def text_of(self, ids: Sequence[int]) -> str:
        """Ids as running text, each token read as `piece` says; a byte-level token's bytes are read
        together with its neighbours', so a character split over several tokens comes out whole."""
        if self.kind == "bytebpe":
            return self.decode(ids, skip_special_tokens=False)
        return "".join(self.piece(i) for i in ids)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)


# -- a cache on disk, so the same tokenizer is never trained twice -------------------

def texts_fingerprint(texts: Iterable[str]) -> str:
    """A short hash of the training texts, in order."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cache_dir(kind: str = "tokenizers") -> Path:
    """Where minitx keeps what it made once (trained tokenizers, a pretrained model's float32
    weights): a folder per kind in $MINITX_CACHE, else in ~/.cache/minitx."""
    root = os.environ.get("MINITX_CACHE") or Path.home() / ".cache" / "minitx"
    return Path(root) / kind


def cached_tokenizer(kind: str, texts: Sequence[str], vocab_size: int, lowercase: bool = True,
                     directory: str | os.PathLike | None = None, eos: bool = False) -> Tokenizer:
    """Train a tokenizer, or load the one trained before on the same (kind, size, case, texts)."""
    directory = Path(directory) if directory is not None else cache_dir()
    key = (f"{kind}-{vocab_size}-{'lower' if lowercase else 'cased'}{'-eos' if eos else ''}-"
           f"{texts_fingerprint(texts)}-v{CACHE_VERSION}")
    path = directory / f"{key}.json"
    if path.exists():
        try:
            return Tokenizer.load(path)
        except ValueError:
            pass  # a damaged cache entry is retrained and overwritten
    tokenizer = Tokenizer.train(kind, texts, vocab_size, lowercase, eos)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False,
                                         encoding="utf-8") as handle:
            handle.write(tokenizer.to_str())
        os.replace(handle.name, path)   # atomic: readers see the old file or the whole new one
    except OSError:
        pass  # a read-only cache only costs speed
    return tokenizer
