"""Guided tours: a path across the pages, one paragraph and one picture a step, with Back and Next.

A tour is a list of steps, each on a page. The tour's place (which tour, which step, whether it is
on) and its sentence live in session_state, so the learner can leave it, wander, and resume where
it was. Every page the tours visit calls `panel(page)` under its title; Home starts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ui import tour_pictures
from ui.common import remembered
from ui.models import KEY as DRAWN_MODEL
from ui.models import PRETRAINED
from ui.pages import page_file, page_title

STATE, SENTENCE = "tour", "tour_sentence"


@dataclass(frozen=True)
class Step:
    page: str                   # the page's name: "tokenization" for app_pages/tokenization.py
    title: str
    text: str
    picture: str                # one of tour_pictures' pictures


@dataclass(frozen=True)
class Tour:
    title: str
    sentence: str               # the prepared sentence; the learner may replace it at any step
    steps: tuple[Step, ...]
    draws: str | None = None    # the sidebar's model to draw on the pages, from the tour's start


TOURS = {
    "prediction": Tour("One prediction through SmolLM2", "The capital of France is", (
        Step("tokenization", "The text becomes tokens",
             "A model never sees letters. Its tokenizer cuts the text into pieces it knows, 49,152 of them for "
             "SmolLM2, and gives each an id. A word usually brings its leading space with it: ' France' is one "
             "piece, space included.", "tokens"),
        Step("embeddings", "Each token picks a row of a table",
             "Each id picks one row of the embedding table: 576 numbers that stand for the token. Similar tokens "
             "have similar rows. These rows are where the residual stream starts; everything later adds to them.",
             "rows"),
        Step("positional", "Positions, turned by RoPE",
             "Attention alone cannot see order. SmolLM2 rotates each head's queries and keys by an angle that grows "
             "with the position (RoPE): each pair of dimensions turns at its own speed, so a query and a key meet "
             "at an angle that depends only on how far apart they are.", "rope"),
        Step("attention", "Heads that look back",
             "Every head turns each token's query into weights over the tokens before it. Some heads have one job "
             "you can name: this one looks at the token just before, so the next layer knows what came before each "
             "word.", "looks back"),
        Step("attention", "Heads that copy",
             "Other heads fetch what the answer needs from far back. This is the head that, in the end, writes the "
             "most in the answer's direction: from the last position it looks back at the token that matters.",
             "copies"),
        Step("decoder", "The answer forms layer by layer",
             "The logit lens reads the residual stream after every layer as if the model ended there. Early layers "
             "mostly echo the input; the answer appears in the later ones, and then stays.", "lens"),
        Step("attribution", "Who wrote the answer",
             "The last vector is a sum of everything every head and block wrote. Split the answer's logit the same "
             "way and a few heads and late feed-forward blocks stand out: they wrote the answer.", "attribution"),
        Step("attribution", "The routes it took",
             "The contribution graph follows the answer back: which earlier positions each vector drew on, through "
             "which layers. Thick blue lines are attention carrying information between positions.", "graph"),
        Step("build", "Now with your attention",
             "Everything so far ran on minitx's code. Write attention yourself in the attention lab below: once "
             "it passes, SmolLM2 answers the same question with your function in all 30 layers, next to minitx's.",
             "answer"),
    ), draws=PRETRAINED),
    "playground": Tour("Train a classifier, watch it learn, ask it", "This movie was surprisingly good!", (
        Step("tokenization", "Reviews become tokens",
             "The classifier reads IMDB reviews as tokens too, from a tokenizer trained on the reviews themselves.",
             "review tokens"),
        Step("training", "Start a run",
             "The quick preset trains a one-layer encoder on 20,000 reviews in under two minutes on a laptop. "
             "Pick it in the form below and press Start.", "preset"),
        Step("training", "Watch it learn",
             "The loss falls as the model learns which words carry sentiment; evaluation accuracy climbs from a coin "
             "flip towards 85%. The charts below are live while a run trains.", "curves"),
        Step("runs", "Ask it about a review",
             "Type your own review: the classifier gives its probability that the review is positive, and each "
             "token's share of the decision (green towards positive, red towards negative).", "ask"),
    )),
}


def start(name: str) -> None:
    """Begin a tour at its first step, with its prepared sentence."""
    st.session_state[STATE] = {"name": name, "step": 0, "active": True}
    st.session_state[SENTENCE] = TOURS[name].sentence
    if TOURS[name].draws:                       # the pages below the tour's pictures show the same model
        st.session_state[DRAWN_MODEL] = TOURS[name].draws


def place() -> dict | None:
    """The tour's place: {"name", "step", "active"}, or None if no tour was started."""
    return st.session_state.get(STATE)


def _go(step: int) -> None:
    tour = place()
    tour["step"] = step
    st.switch_page(page_file(TOURS[tour["name"]].steps[step].page))


def panel(page: str) -> None:
    """On a page the tour is at: the step's paragraph and picture, and Back / Next / Leave. On another page
    while a tour is on: a line saying where it waits. Nothing when no tour is on."""
    tour = place()
    if not tour or not tour["active"]:
        return
    guide = TOURS[tour["name"]]
    index = tour["step"]
    step, count = guide.steps[index], len(guide.steps)
    if step.page != page:
        with st.container(border=True):
            left, middle, right = st.columns([4, 1, 1])
            left.markdown(f":material/explore: The tour *{guide.title}* waits at step {index + 1} of {count}, on "
                          f"**{page_title(step.page)}**.")
            if middle.button("Back to the tour", key="tour_resume"):
                _go(index)
            if right.button("Leave the tour", key="tour_leave_elsewhere"):
                tour["active"] = False
                st.rerun()
        return
    with st.container(border=True, key="tour_panel"):
        st.progress((index + 1) / count, text=f"**{guide.title}** · step {index + 1} of {count}: **{step.title}**")
        st.markdown(step.text)
        sentence = st.text_input("the sentence the tour follows (type your own)", max_chars=500,
                                 **remembered(SENTENCE, guide.sentence))
        tour_pictures.draw(step.picture, sentence)
        back, forward, leave = st.columns([1, 1, 4])
        if back.button("Back", key="tour_back", icon=":material/arrow_back:", disabled=index == 0):
            _go(index - 1)
        last = index == count - 1
        if forward.button("Finish" if last else "Next", key="tour_next", type="primary",
                          icon=":material/check:" if last else ":material/arrow_forward:"):
            if last:
                tour["active"], tour["step"] = False, 0
                st.switch_page(page_file("home"))
            _go(index + 1)
        if leave.button("Leave the tour (resume it from Home)", key="tour_leave"):
            tour["active"] = False
            st.rerun()


def home_buttons() -> None:
    """Home's way in: each tour's start button, and Resume where a tour was left."""
    tour = place()
    columns = st.columns(len(TOURS))
    for column, (name, guide) in zip(columns, TOURS.items()):
        with column:
            st.markdown(f"**{guide.title}** ({len(guide.steps)} steps)")
            if st.button("Take this tour", key=f"tour_start_{name}", icon=":material/explore:"):
                start(name)
                st.switch_page(page_file(guide.steps[0].page))
            if tour and tour["name"] == name and not tour["active"] and tour["step"] > 0:
                if st.button(f"Resume at step {tour['step'] + 1}", key=f"tour_resume_{name}"):
                    tour["active"] = True
                    st.switch_page(page_file(guide.steps[tour["step"]].page))
