"""What the attribution and the contribution graph read: a prompt's tokens, cut to what the analyses
support, and the token whose logit is explained. Bad input becomes a ValueError that says what to do;
what was changed (a cut, a target split into pieces) becomes a note."""

from __future__ import annotations

from dataclasses import dataclass

# The analyses keep every layer's attention weights (L x H x T x T), which grow with the square of the
# text: the question is about one prediction, and its last 64 tokens are what a page can draw.
MAX_TOKENS = 64


@dataclass
class AnalysisText:
    ids: list[int]
    notes: list[str]


def analysis_text(tokenizer, text: str, limit: int = MAX_TOKENS) -> AnalysisText:
    """The prompt's ids as the model reads them (its start tokens first), the last `limit` of them."""
    if not text.strip():
        raise ValueError("the prompt is empty: give the model some text to continue.")
    ids = tokenizer.start_ids + tokenizer.encode(text).ids
    notes = []
    if len(ids) > limit:
        notes.append(f"the prompt is {len(ids)} tokens; the analyses read its last {limit} (their limit), so the "
                     f"prediction explained is the same one, from a shorter text.")
        ids = ids[-limit:]
    if len(ids) == 1:
        notes.append("the prompt is a single token: no earlier token to look back at, so every route starts at "
                     "that token's own embedding. Add words to see attention move information.")
    return AnalysisText(ids, notes)


def target_token(tokenizer, text: str) -> tuple[int, str | None]:
    """The id of the token whose logit is explained, and a note if the text is more than one token (the
    first is used). A word usually starts with a space in a byte-level vocabulary: " Paris", not "Paris"."""
    if not text:
        raise ValueError("the target token is empty: give a token such as ' Paris' (with its leading space).")
    ids = tokenizer.encode(text).ids
    if not ids:
        raise ValueError(f"{text!r} is no token of this model's vocabulary.")
    if len(ids) == 1:
        return ids[0], None
    pieces = " + ".join(repr(tokenizer.piece(i)) for i in ids)
    return ids[0], f"{text!r} is {len(ids)} tokens ({pieces}); the first, {tokenizer.piece(ids[0])!r}, is explained."
