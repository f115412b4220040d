"""What a finished run scored, drawn for the Training page (the run just trained) and the Runs page
(a saved run): a classifier's accuracy, confusion matrix and most confidently wrong reviews, a language
model's bits per character beside ordinary compressors (and the learner's bits_per_char, if it passed)."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from minitx.config import ModelConfig
from minitx.runs import format_duration
from ui import charts
from ui.common import literal_markdown, review_text
from ui.labs import call_learner, mine_caption, use_my_code

MAX_ATTRIBUTION_CHIPS = 600


def draw(model_config: ModelConfig, summary: dict, key: str, saved: str = "") -> None:
    """The run's results from its summary (metrics.json without its history); `saved`: where it is, in words."""
    if model_config.is_lm:
        draw_lm(summary, key, saved)
        return
    if summary.get("test_accuracy") is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("test accuracy", f"{summary['test_accuracy']:.4f}", help=summary.get("test_subset"))
    b.metric("validation accuracy", f"{summary['val_accuracy']:.4f}" if summary.get("val_accuracy") else "—",
             help=f"The weights of step {summary.get('best_step')} were kept: the best on validation.")
    c.metric("wall time", format_duration(summary.get("wall_seconds")))
    d.metric("tokens/s", f"{summary.get('tokens_per_second', 0):,.0f}")
    if saved:
        st.caption(saved)
    left, right = st.columns([1, 2])
    if summary.get("confusion"):
        left.altair_chart(charts.confusion(summary["confusion"]), key=f"{key}_confusion")
    with right:
        st.markdown("**The most confidently wrong test reviews**")
        for item in summary.get("confidently_wrong") or []:
            truth = "positive" if item["label"] == 1 else "negative"
            said = item["p_positive"] if item["label"] == 0 else 1 - item["p_positive"]
            text = review_text(item["text"])
            with st.expander(f"{truth} review, {said:.0%} sure it was {'negative' if item['label'] else 'positive'}: "
                             f"{literal_markdown(text[:70])}…"):
                st.markdown(literal_markdown(text) + (" …" if item["truncated"] else ""))   # as typed


def draw_lm(summary: dict, key: str, saved: str = "") -> None:
    """A language model's score beside what ordinary compressors need for the same text."""
    if summary.get("test_bits_per_char") is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("test bits per character", f"{summary['test_bits_per_char']:.3f}", help=summary.get("test_subset"))
    b.metric("test perplexity (per token)", f"{summary['test_perplexity']:.1f}")
    c.metric("wall time", format_duration(summary.get("wall_seconds")))
    d.metric("tokens/s", f"{summary.get('tokens_per_second', 0):,.0f}")
    baselines = summary.get("baselines") or {}
    rows = pd.DataFrame([{"model": "this model", "bits per character": summary["test_bits_per_char"]}]
                        + [{"model": name, "bits per character": value} for name, value in baselines.items()])
    st.altair_chart(charts.bars(rows, "model", "bits per character",
                                title="Bits per character on the same held-out text (lower is better)"),
                    key=f"{key}_lm_baselines")
    st.caption("A language model is a compressor: the probability it gives each next token is what an "
               "arithmetic coder would need. zlib (gzip), bz2 and xz are ordinary compressors; the "
               "unigram model knows each token's frequency and nothing else." + (f" {saved}" if saved else ""))
    mine = use_my_code("bits_per_char")
    if mine and summary.get("test_tokens"):
        args = (summary["test_loss"], summary["test_tokens"], summary["test_chars"])
        yours, problem = call_learner("bits_per_char", mine, *args)
        if problem:
            st.error(f"Your bits_per_char could not run: {problem}")
        else:
            mine_caption("bits_per_char")
            st.metric("test bits per character, by your function", f"{float(yours):.3f}",
                      help=f"bits_per_char({args[0]:.4f} nats per token, {args[1]:,} tokens, {args[2]:,} characters)")


def attribution_chips(tokens: list[str], scores: list[float]) -> str:
    """Tokens coloured green (towards positive) or red (towards negative), scaled to the largest."""
    top = max((abs(s) for s in scores), default=0.0) or 1.0
    chips = []
    for token, score in list(zip(tokens, scores))[:MAX_ATTRIBUTION_CHIPS]:
        alpha = min(1.0, abs(score) / top)
        rgb = "22,163,74" if score > 0 else "220,38,38"
        chips.append(f'<span title="{score:+.4f}" style="background:rgba({rgb},{alpha:.2f});'
                     f'padding:1px 3px;margin:1px;border-radius:4px;display:inline-block">'
                     f'{html.escape(token)}</span>')
    return '<div data-testid="attribution-chips" style="line-height:1.9">' + "".join(chips) + "</div>"
