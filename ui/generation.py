"""Generating text on a page: the controls, the text coloured by probability, and one step's candidates.

Shared by the Decoder page and the Runs page. The numbers all come from
`minitx.generate.generate`; this file only draws them.
"""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from minitx.generate import MAX_TEMPERATURE, generate, prompt_ids
from ui import charts

MAX_PROMPT_CHARS = 100_000
MAX_NEW_TOKENS = 512


@st.cache_data(show_spinner="Generating...", max_entries=32)
def generated(_model, _tokenizer, model_key: str, prompt: str, max_new_tokens: int, temperature: float,
              top_k: int, top_p: float, seed: int, use_cache: bool = True, _chat=None, _engine=None):
    """generate() once per model (named by model_key: a chat's key names the chat) and settings; the
    page reruns on every control below it. With _chat (a chat template), the prompt is a user's
    message and the model answers it; _engine: the model's decode engine, if it has one."""
    ids = _chat.encode([{"role": "user", "content": prompt}]) if _chat else prompt_ids(_tokenizer, prompt)
    if not ids:
        ids = _tokenizer.encode(" ").ids          # a pretrained model has no token that starts a text
    # untimed, the same settings: a first call of each operation pays one-off costs
    generate(_model, ids[-2:], 2, temperature, top_k, top_p, seed, use_cache=use_cache, engine=_engine)
    return generate(_model, ids, max_new_tokens, temperature, top_k, top_p, seed,
                    use_cache=use_cache, eos_id=_tokenizer.stop_ids, engine=_engine)


def controls(key: str, vocab_size: int, context: int, prompt: str = "This movie was", chat: bool = False) -> dict:
    """Prompt (or a chat's message) and sampling settings, as widgets. Every value they allow is one
    generate accepts (more new tokens than the context holds are cut, with a note)."""
    prompt = st.text_area("your message" if chat else "prompt", prompt, key=f"{key}_{'chat' if chat else 'prompt'}",
                          max_chars=MAX_PROMPT_CHARS, height=80,
                          help="The model answers it, as the chat template below frames it." if chat
                          else "Empty: the model starts a review from nothing.")
    c1, c2, c3, c4, c5 = st.columns(5)
    settings = dict(
        max_new_tokens=c1.number_input("max new tokens", 1, MAX_NEW_TOKENS, min(60, context // 2),
                                       key=f"{key}_max_new",
                                       help=f"The model's context holds {context} tokens, prompt included."),
        temperature=c2.number_input("temperature", 0.0, MAX_TEMPERATURE, 0.0 if chat else 0.8, step=0.1,
                                    key=f"{key}_{'chat_' if chat else ''}temperature",
                                    help="0: always the most likely token. 1: the model's own probabilities. "
                                         "Higher: flatter, more surprising."),
        top_k=c3.number_input("top-k (0 = off)", 0, vocab_size, 40, key=f"{key}_top_k",
                              help="Sample only among the k most likely tokens."),
        top_p=c4.slider("top-p (1 = off)", 0.0, 1.0, 0.95, step=0.05, key=f"{key}_top_p",
                        help="Sample only among the most likely tokens that together reach probability p."),
        seed=c5.number_input("seed", 0, 1_000_000, 0, key=f"{key}_seed"))
    return {"prompt": prompt, **{k: (int(v) if k in ("max_new_tokens", "top_k", "seed") else float(v))
                                 for k, v in settings.items()}}


def explain(tokenizer, prompt: str, settings: dict, chat: bool = False) -> list[str]:
    """What the settings mean for this generation, in words: the edge cases a learner may try."""
    notes = []
    if not prompt.strip():
        notes.append("An empty message: the model answers the chat template's frame alone." if chat else
                     "No prompt: the model starts a review from nothing (just the end-of-review token).")
    else:
        ids = tokenizer.encode(prompt).ids
        unknown = sum(t == tokenizer.unk_id for t in ids)
        if unknown:
            notes.append(f"{unknown} of the prompt's {len(ids)} tokens are [UNK]: characters this tokenizer "
                         f"never saw in training (emoji, another script, control characters).")
    t, k, p = settings["temperature"], settings["top_k"], settings["top_p"]
    if t == 0:
        notes.append("Temperature 0 is greedy: always the most likely token, so seed, top-k and top-p change nothing.")
    elif t > 2:
        notes.append(f"Temperature {t:g} flattens the probabilities towards uniform: expect gibberish.")
    if k == 0:
        notes.append("top-k 0: off, every token may be sampled.")
    if p == 0:
        notes.append("top-p 0 keeps only the most likely token: greedy.")
    elif p == 1:
        notes.append("top-p 1: off, every token may be sampled.")
    return notes


def coloured_text(tokenizer, prompt: str, out) -> str:
    """The prompt in grey, then each new token on a background as green as the model was sure of it."""
    chips = [f'<span style="color:#666">{html.escape(prompt)}</span>']
    for step, (token, p) in enumerate(zip(out.new_ids, out.probabilities)):
        text = tokenizer.piece(token)
        chips.append(f'<span title="step {step}: p = {p:.3f}" style="background:rgba(22,163,74,{0.15 + 0.85 * p:.2f});'
                     f'border-radius:3px;white-space:pre-wrap">{html.escape(text)}</span>')
    return '<div data-testid="generated-text" style="line-height:1.9;font-size:1.05rem">' + "".join(chips) + "</div>"


def label(tokenizer, token_id: int) -> str:
    """A token as an axis label: its text, or [EOS] for the end (and start) of a review."""
    return "[EOS]" if token_id == tokenizer.eos_id and tokenizer.kind != "bytebpe" else tokenizer.piece(token_id)


def token_chips(tokenizer, ids: list[int], limit: int = 400) -> str:
    """Ids as chips, each its text and its id: the special tokens of a chat template stand out."""
    chips = []
    for token in ids[:limit]:
        special = token in tokenizer.stop_ids or token in tokenizer.start_ids or \
            tokenizer.id_to_token(token) in ("<|im_start|>", "<|im_end|>")
        text = tokenizer.piece(token)
        shown = html.escape(text).replace("\n", "↵").replace(" ", "·") or "&nbsp;"
        colour = "#fde68a" if special else "#e0f2fe"
        chips.append(f'<span class="chip" title="id {token}" style="background:{colour};border-radius:6px;padding:2px 6px;'
                     f'margin:2px;display:inline-block;font-family:monospace">{shown}'
                     f'<sub style="color:#64748b;margin-left:3px">{token}</sub></span>')
    return '<div data-testid="template-chips">' + "".join(chips) + "</div>"


def show(tokenizer, prompt: str, out, settings: dict, key: str, chat: bool = False) -> None:
    """The generation: coloured text, its notes, and the top candidates of a step the learner picks."""
    for note in out.notes:
        st.info(f"Note: {note}")
    for note in explain(tokenizer, prompt, settings, chat):
        st.caption(note)
    st.markdown(coloured_text(tokenizer, "" if chat else prompt, out), unsafe_allow_html=True)
    ended = ("its end-of-turn token" if chat else "the end-of-review token") if out.stopped_at_eos else "max new tokens"
    st.caption(f"{len(out.new_ids)} new tokens, stopped by {ended}; the greener, the more likely the model "
               f"thought that token (hover one for its probability).")
    if not out.new_ids:
        return
    step = st.slider("see the candidates at step", 0, len(out.new_ids) - 1, 0, key=f"{key}_step") \
        if len(out.new_ids) > 1 else 0
    rows = pd.DataFrame([{"token": repr(label(tokenizer, t)), "probability": p} for t, p in out.top[step]])
    chosen = repr(label(tokenizer, out.new_ids[step]))
    st.altair_chart(charts.bars(rows, "token", "probability",
                                title=f"Step {step}: the 10 most likely next tokens (written: {chosen})"),
                    key=f"{key}_top")


def samples_slider(written: list[dict], key: str) -> None:
    """What a language model wrote at each evaluation (minitx.curves.samples), on a slider: from random
    pieces at step 0 to sentences; a new slider with every evaluation, so that a run's newest shows."""
    if not written:
        return
    steps = [w["step"] for w in written]
    step = st.select_slider("at training step", steps, value=steps[-1], key=f"{key}_{len(steps)}") \
        if len(steps) > 1 else steps[0]
    chosen = written[steps.index(step)]
    st.code(chosen["sample"], language=None, wrap_lines=True)
    if chosen.get("bits_per_char") is not None:
        st.caption(f"Step {step}: {chosen['bits_per_char']:.3f} bits per character on the validation text.")
