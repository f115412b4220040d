"""Page 1: tokenization. Text becomes ids; the tokenizer decides what a 'word' is."""

import html

import pandas as pd
import streamlit as st

from minitx.bpe import learn_merges, word_counts
from minitx.config import TOKENIZER_KINDS
from minitx.inspect import bpe_merges, tokenizer_stats
from minitx.tokenizer import Tokenizer
from ui.charts import bars
from ui.common import check_yourself, show_source, static_table
from ui.labs import mine_caption, run_demo, use_my_code
from ui import generation, tour
from ui.model_sidebar import model_sidebar
from ui.models import model_choice, pretrained
from ui.resources import SAMPLE_REVIEWS, imdb_sample, sample_stats, trained_tokenizer

PALETTE = ["#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#ede9fe", "#ffedd5"]
MAX_CHIPS = 400
STATS_REVIEWS = 500
MERGES_VOCAB = 1_000
MY_MERGES = 12


@st.cache_data(show_spinner=False, max_entries=2)
def sample_words(lowercase: bool) -> dict:
    """The IMDB sample's words, spelt in characters, with their counts (minitx.bpe.word_counts)."""
    return word_counts(imdb_sample()[0], lowercase)


@st.cache_data(show_spinner="Learning merges by hand...", max_entries=2)
def minitx_merges(lowercase: bool) -> list:
    return learn_merges(sample_words(lowercase), MY_MERGES)


@st.cache_data(show_spinner=False, max_entries=2)
def real_sample_stats(n_reviews: int) -> dict:
    """tokenizer_stats of the pretrained model's tokenizer on the IMDB sample."""
    return tokenizer_stats(pretrained()[0].tokenizer, imdb_sample()[0][:n_reviews], 8_192)

cfg = model_sidebar()
st.title("Tokenization")
tour.panel("tokenization")
st.markdown(
    "A model cannot read letters: it looks up integer **ids**. A tokenizer cuts text into "
    "pieces from a fixed **vocabulary** and gives each piece its id. *Word* tokenizers keep "
    "whole words and turn anything unseen into `[UNK]`; *char* tokenizers never meet an unknown "
    "piece but make sequences long. *BPE*, *WordPiece* and *Unigram* sit between: frequent "
    "words stay whole, rare ones are built from pieces. *bytebpe* runs BPE on the text's UTF-8 "
    "bytes, as GPT-2 and SmolLM2 do: every byte is in the vocabulary from the start, so nothing is "
    f"ever unknown and decoding gives back the exact text. Here a tokenizer is trained live on "
    f"{SAMPLE_REVIEWS:,} IMDB reviews.")

c1, c2, c3 = st.columns([1, 2, 1])
kind = c1.selectbox("kind", TOKENIZER_KINDS, index=TOKENIZER_KINDS.index("bpe"), key="tok_kind")
vocab_size = c2.select_slider("vocabulary size", [100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000],
                              value=5_000, key="tok_vocab")
lowercase = c3.toggle("lowercase", value=True, key="tok_lower")
text = st.text_area("Type a review", "This movie was unbelievably good!<br />I'd watch it again 😀",
                    key="tok_text", max_chars=100_000)

tokenizer = trained_tokenizer(kind, vocab_size, lowercase)
if tokenizer is None:
    st.warning("IMDB could not be loaded, so no tokenizer can be trained: set MINITX_IMDB to a "
               "local copy of the dataset, or go online.")
    st.stop()

if not text.strip():
    st.info("Type some text to see its tokens.")
else:
    enc = tokenizer.encode(text)
    shown = enc.tokens[:MAX_CHIPS]
    chips = "".join(
        f'<span class="chip" title="id {i} · characters {a}-{b}" style="background:{PALETTE[n % len(PALETTE)]};'
        f'border-radius:6px;padding:2px 6px;margin:2px;display:inline-block;font-family:monospace">'
        f'{html.escape(t) if t.strip() else "&nbsp;"}<sub style="color:#64748b;margin-left:3px">{i}</sub></span>'
        for n, (t, i, (a, b)) in enumerate(zip(shown, enc.ids, enc.offsets)))
    st.markdown(f'<div data-testid="token-chips">{chips}</div>', unsafe_allow_html=True)
    notes = [f"{len(enc.ids)} tokens for {len(text)} characters "
             f"({len(text) / max(1, len(enc.ids)):.1f} characters per token)."]
    if len(enc.ids) > MAX_CHIPS:
        notes.append(f"Showing the first {MAX_CHIPS} chips.")
    if len(enc.ids) + 1 > cfg.max_len:
        notes.append(f"The model keeps {cfg.max_len} ids ([CLS] included), so this text would be "
                     f"truncated: the first quarter and the end are kept.")
    unknown = enc.ids.count(tokenizer.unk_id)
    if unknown:
        notes.append(f"{unknown} piece(s) are unknown to this vocabulary ([UNK]).")
    if tokenizer.kind == "bytebpe":
        notes.append("Byte-level tokens are written with a printable stand-in for each byte: Ġ is a space, "
                     "Ċ a newline; an emoji's four bytes may take several tokens.")
    st.caption(" ".join(notes))

st.subheader("On real reviews")
stats = sample_stats(kind, vocab_size, lowercase, cfg.max_len, STATS_REVIEWS)
m1, m2, m3, m4 = st.columns(4)
m1.metric("characters per token", f"{stats['chars_per_token']:.2f}")
m2.metric("tokens per review (mean)", f"{stats['mean_tokens_per_review']:.0f}")
m3.metric(f"reviews cut by max_len {cfg.max_len}", f"{stats['truncated_share']:.0%}")
m4.metric("unknown-token rate", f"{stats['unknown_rate']:.2%}")
st.caption(f"Over {STATS_REVIEWS} IMDB reviews; vocabulary reached: {stats['vocab_size']:,} "
           f"(asked: {vocab_size:,}). Change max_len in the sidebar.")

if st.toggle("Compare vocabulary sizes (trains 5 tokenizers the first time)", key="tok_compare"):
    rows = []
    for size in (500, 2_000, 5_000, 10_000, 30_000):
        rows.append({"vocabulary size": f"{size:,}", "tokens per review":
                     sample_stats(kind, size, lowercase, cfg.max_len, STATS_REVIEWS)["mean_tokens_per_review"]})
    st.altair_chart(bars(pd.DataFrame(rows), "vocabulary size", "tokens per review",
                         title=f"{kind}: a bigger vocabulary, shorter sequences"), key="tok_curve")

choice = model_choice("classify")
if choice.pretrained is not None:
    real = choice.pretrained.tokenizer
    st.subheader(f"A real model's tokenizer: {choice.pretrained.name}'s {real.vocab_size:,} byte-level pieces")
    st.markdown("SmolLM2 was trained with a byte-level BPE of its own: GPT-2's scheme, learnt on its trillions of "
                "tokens of web text, code and maths. Your text in its pieces (· is a space, ↵ a newline):")
    if text.strip():
        st.markdown(generation.token_chips(real, real.encode(text).ids[:MAX_CHIPS]), unsafe_allow_html=True)
    real_stats = real_sample_stats(STATS_REVIEWS)
    r1, r2, r3 = st.columns(3)
    r1.metric("characters per token (IMDB)", f"{real_stats['chars_per_token']:.2f}",
              help=f"Over the same {STATS_REVIEWS} reviews as above; its vocabulary was not learnt on them.")
    r2.metric("tokens per review (mean)", f"{real_stats['mean_tokens_per_review']:.0f}")
    r3.metric("unknown-token rate", "0 %", help="Every byte is a token: nothing is ever unknown.")
    rows = [{"text": repr(piece), "ids": ", ".join(map(str, real.encode(piece).ids)),
             "pieces": " | ".join(real.piece(i) for i in real.encode(piece).ids)}
            for piece in ("the", " the", "The", " The", " unbelievably", "😀", "🎬", "שלום", "2024")]
    static_table(pd.DataFrame(rows))
    st.caption("\" the\" and \"the\" are different tokens: GPT-2's rule keeps a word with the space before it, so "
               "the middle of a sentence (\" the\") and its start (\"the\", \"The\") are learnt apart. A rare "
               "word falls into known pieces. An emoji is 4 bytes of UTF-8 and another script 2 bytes a letter: "
               "where the vocabulary has no piece for them, they fall into bytes, each shown as \ufffd until the "
               "bytes that finish the character come. SmolLM2 splits numbers into single digits.")

st.subheader("The first BPE merges")
# BPE's first merges are the same whatever vocabulary it goes on to: a small one shows them
bpe = tokenizer if kind == "bpe" else trained_tokenizer("bpe", MERGES_VOCAB, lowercase)
merges = bpe_merges(bpe, 15)
merge_table = pd.DataFrame([{"step": n + 1, "merge": f"{a} + {b}", "new token": a + b}
                            for n, (a, b) in enumerate(merges)])
static_table(merge_table)
st.caption("BPE starts from single characters and merges the most frequent neighbouring pair, "
           "again and again; '▁' marks the start of a word.")

mine = use_my_code("bpe_merge")
if mine:
    words = sample_words(lowercase)
    result, problem = run_demo("bpe_merge", mine, {"kind": "merges", "words": [[list(w), n] for w, n in words.items()],
                                                   "n": MY_MERGES})
    if problem:
        st.error(f"Your bpe_merge could not run: {problem}")
    else:
        mine_caption("bpe_merge")
        ours = minitx_merges(lowercase)
        yours = result["merges"]
        static_table(pd.DataFrame([{"step": n + 1, "minitx's bpe_merge": " + ".join(pair),
                                    "yours": " + ".join(yours[n]) if n < len(yours) else "—"}
                                   for n, pair in enumerate(ours)]))
        st.caption(f"BPE by hand on the words of {SAMPLE_REVIEWS:,} reviews ({len(words):,} different words), "
                   f"{MY_MERGES} merges: " + ("the same as minitx's." if [tuple(y) for y in yours] == ours
                                              else "not the same as minitx's."))

show_source(Tokenizer.train, Tokenizer.encode, tokenizer_stats)
check_yourself(
    "Why does the *word* tokenizer show more [UNK] than *BPE* at the same vocabulary size, "
    "and what does BPE pay for that?",
    "A word vocabulary only holds words it saw often enough; anything else is [UNK]. BPE can "
    "spell any word it has the characters for out of smaller pieces, so it rarely needs [UNK], "
    "but it pays with **more tokens per review** (longer sequences, more compute, and attention "
    "cost grows with the square of the length).")
