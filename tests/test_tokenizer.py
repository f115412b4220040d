import json

import pytest

from minitx.config import BYTE_LEVEL_MIN_VOCAB
from minitx.tokenizer import (CLS_ID, PAD_ID, UNK_ID, Tokenizer, cached_tokenizer,
                              texts_fingerprint)

TEXTS = [
    "This movie was great!! I loved every minute.<br /><br />Ten out of ten.",
    "Terrible film. The acting was wooden and the plot made no sense at all.",
    "A quiet, moving story; the ending made me cry.",
    "Worst two hours of my life, don't bother.",
] * 25

KINDS = ["word", "char", "wordpiece", "bpe", "bytebpe", "unigram"]


def small_vocab(kind: str) -> int:
    """120 pieces, or for bytebpe, whose 256 bytes come first, 40 merges on top of them."""
    return BYTE_LEVEL_MIN_VOCAB + 40 if kind == "bytebpe" else 120


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_have_fixed_ids(kind):
    tok = Tokenizer.train(kind, TEXTS, vocab_size=small_vocab(kind))
    assert tok.kind == kind
    assert (tok.token_to_id("[PAD]"), tok.token_to_id("[UNK]"), tok.token_to_id("[CLS]")) == (PAD_ID, UNK_ID, CLS_ID)
    assert 3 < tok.vocab_size <= small_vocab(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(kind, tmp_path):
    tok = Tokenizer.train(kind, TEXTS, vocab_size=small_vocab(kind), lowercase=False)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    sample = "An UNSEEN review: the plot was great, the ending wooden 😀 你好"
    assert again.encode(sample) == tok.encode(sample)
    assert again.kind == kind and again.lowercase is False
    assert again.encode_batch([sample, "x"]) == [tok.encode(sample).ids, tok.encode("x").ids]


@pytest.mark.parametrize("kind", KINDS)
def test_offsets_point_back_into_the_text(kind):
    tok = Tokenizer.train(kind, TEXTS, vocab_size=small_vocab(kind) + 80)
    text = "The plot was GREAT<br />and moving"
    enc = tok.encode(text)
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) > 0
    for token_id, token, (start, end) in zip(enc.ids, enc.tokens, enc.offsets):
        assert 0 <= start <= end <= len(text)
        piece = text[start:end].lower()
        word = (tok.piece(token_id) if kind == "bytebpe" else token.lstrip("▁#")).strip()
        if token != "[UNK]" and word:   # a bare space may stand for a removed <br /> tag
            assert word.lower() in piece


def test_word_tokenizer_lowercases_strips_html_and_marks_unknowns():
    tok = Tokenizer.train("word", TEXTS, vocab_size=200, lowercase=True)
    enc = tok.encode("GREAT<br />movie zxqv")
    assert enc.tokens == ["great", "movie", "[UNK]"]


def test_odd_unicode_never_raises():
    tok = Tokenizer.train("bpe", TEXTS, vocab_size=150)
    for text in ["", "   ", "😀🎬", "你好世界", "שלום עולם", "zero\u200bwidth", "ctrl\x00\x07chars", "a" * 10_000]:
        enc = tok.encode(text)
        assert len(enc.ids) == len(enc.tokens)


def test_cache_trains_once_and_survives_a_damaged_entry(tmp_path):
    first = cached_tokenizer("word", TEXTS, 100, directory=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and texts_fingerprint(TEXTS) in files[0].name
    again = cached_tokenizer("word", TEXTS, 100, directory=tmp_path)
    assert again.to_str() == first.to_str()
    other = cached_tokenizer("word", TEXTS[:50], 100, directory=tmp_path)   # other texts, other key
    assert len(list(tmp_path.glob("*.json"))) == 2 and other is not None
    files[0].write_text("{ not json")
    repaired = cached_tokenizer("word", TEXTS, 100, directory=tmp_path)
    assert repaired.encode("great movie") == first.encode("great movie")
    json.loads(files[0].read_text())   # rewritten whole


def test_loading_garbage_raises_value_error(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": 3}')
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer.load(bad)
    with pytest.raises(ValueError, match="cannot read"):
        Tokenizer.load(tmp_path / "missing.json")


HOSTILE = ["", " ", "   leading and trailing   ", "line one\nline two\n\n\nfour", "tabs\tand\r\nwindows",
           "😀🎬👩‍👩‍👧 emoji, joined ones too", "你好世界", "שלום עולם, right to left", "مرحبا",
           "zero\u200bwidth\ufeff", "ctrl\x00\x07\x1b[31mchars", "[PAD] [UNK] [CLS] [EOS] typed as text",
           "<|im_start|>user\n<|im_end|>", "a" * 10_000, "e\u0301 (a combining accent) vs \u00e9", "\U0010ffff"]


def test_byte_level_bpe_gives_back_every_text_exactly():
    """Newlines, runs of spaces, emoji, right-to-left text, control characters and the special
    tokens' own names all come back: nothing is unknown, nothing is normalised away."""
    tok = Tokenizer.train("bytebpe", TEXTS, vocab_size=small_vocab("bytebpe"), lowercase=False, eos=True)
    for text in HOSTILE:
        ids = tok.encode(text).ids
        assert tok.unk_id not in ids and tok.decode(ids) == text, text[:40]
    assert tok.normalize("Two  spaces<br />and a tag") == "Two  spaces<br />and a tag"
    # the same texts through the other kinds lose what the issue says they lose: the test would see it
    other = Tokenizer.train("bpe", TEXTS, vocab_size=150, lowercase=False)
    assert other.decode(other.encode("line one\nline two").ids) != "line one\nline two"


def test_a_special_token_typed_in_a_text_is_spelled_not_taken():
    tok = Tokenizer.train("bytebpe", TEXTS, vocab_size=small_vocab("bytebpe"), lowercase=False, eos=True)
    assert tok.eos_id not in tok.encode("the end [EOS] of it").ids
    assert tok.start_ids == [tok.eos_id] and tok.stop_ids == [tok.eos_id]


def test_bytebpe_needs_room_for_every_byte():
    with pytest.raises(ValueError, match="at least 261"):
        Tokenizer.train("bytebpe", TEXTS, vocab_size=200)
