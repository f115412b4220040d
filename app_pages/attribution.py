"""Page 7: what built this answer. Which heads and feed-forward blocks wrote the prediction (direct logit
attribution), and the routes by which information reached it (the contribution graph)."""

import pandas as pd
import streamlit as st

from minitx.analysis_input import analysis_text, target_token
from minitx.attribution import attribute, explainable, promoted_tokens, record
from minitx.contribution_graph import contribution_graph, proximity
from ui import charts, generation, tour
from ui.common import check_yourself, show_source, static_table
from ui.model_sidebar import model_sidebar
from ui.models import drawn_language_model, model_choice

MAX_DRAWN_EDGES = 2_000        # the strongest this many: a browser draws a few thousand lines smoothly


def as_sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


@st.cache_data(show_spinner="Running the model and keeping what every block added...", max_entries=8)
def recorded(_model, model_key: str, ids: tuple[int, ...]):
    return record(_model, list(ids))


@st.cache_data(show_spinner="Sharing every vector out among its parts, layer by layer...", max_entries=8)
def graph_of(_model, _recording, model_key: str, ids: tuple[int, ...]):
    return contribution_graph(_model, _recording)


cfg = model_sidebar()
st.title("What built this answer")
tour.panel("attribution")
st.markdown(
    "A pre-norm transformer never rewrites its **residual stream**: every head and every feed-forward block "
    "only *adds* a vector to it. So the last vector, the one the output head reads, is a sum: the token's "
    "embedding plus everything each part wrote. This page takes that sum apart: which parts wrote the "
    "answer (**direct logit attribution**), and by which routes information from earlier tokens reached it "
    "(the **contribution graph**).")

choice = model_choice("lm", decoder=True)
drawn = drawn_language_model(choice, cfg)
if drawn is None:
    st.warning("No tokenizer available: set MINITX_IMDB to a local copy of IMDB, or go online.")
    st.stop()
model, tokenizer = drawn.model, drawn.tokenizer
problem = explainable(model)
if problem:
    st.info(f"This model cannot be taken apart here: {problem}")
    st.stop()
if drawn.run is not None:
    st.caption(f"Run {drawn.run.path.name}: {drawn.cfg.summary()}.")
elif drawn.pretrained is None:
    st.info("Random weights of the sidebar's model: the sums below are exact, but they explain nothing a model "
            "learnt. Draw SmolLM2 (sidebar), or train a language model on **10 · Training**.")

prompt = st.text_input("text", "The capital of France is" if drawn.pretrained is not None else "This movie was",
                       key="attr_text", max_chars=5_000)
try:
    text = analysis_text(tokenizer, prompt)
except ValueError as error:
    st.info(as_sentence(str(error)))
    st.stop()
for note in text.notes:
    st.caption(as_sentence(note))
ids = text.ids
recording = recorded(model, drawn.key, tuple(ids))
labels = [f"{p} {generation.label(tokenizer, t)!r}" for p, t in enumerate(ids)]
chosen = st.select_slider("position", labels, labels[-1], key="attr_position") if len(ids) > 1 else labels[0]
position = labels.index(chosen) if chosen in labels else len(ids) - 1
probabilities = recording.logits[position].softmax(-1)
predicted = int(probabilities.argmax())
st.markdown(f"After **{labels[position]}** the model predicts **{generation.label(tokenizer, predicted)!r}** "
            f"({float(probabilities[predicted]):.0%}).")

# -- direct logit attribution ------------------------------------------------------------------
st.header("Who wrote the answer: direct logit attribution")
st.markdown(
    "The final norm divides the last vector by its size s; with s frozen at its real value, the logit of a "
    "token is a sum again, one term per part: (part / s) · (norm weight × the token's row of the output "
    "head). Blue parts push the token up, red ones push it down.")
c1, c2 = st.columns(2)
target_text = c1.text_input("token to explain (empty: the prediction)", "", key="attr_target",
                            placeholder=generation.label(tokenizer, predicted))
versus_text = c2.text_input("against another token (optional)", "", key="attr_versus", placeholder=" London")
target, other, notes = predicted, None, []
try:
    if target_text:
        target, note = target_token(tokenizer, target_text)
        notes += [note] if note else []
    if versus_text:
        other, note = target_token(tokenizer, versus_text)
        notes += [note] if note else []
except ValueError as error:
    st.info(as_sentence(str(error)))
for note in notes:
    st.caption(as_sentence(note))
parts = attribute(model, recording, target, position, other)
what = repr(generation.label(tokenizer, target)) + (f" − {generation.label(tokenizer, other)!r}" if other is not None
                                                    else "")
L, H = parts.heads.shape
layer_names = [str(layer) for layer in range(L)]
c1, c2 = st.columns([3, 2])
c1.altair_chart(charts.contributions(parts.heads, layer_names, [str(h) for h in range(H)],
                                     f"Each head's part of the logit of {what}"), key="attr_heads")
c1.altair_chart(charts.signed_bars(parts.feed_forward.tolist(), layer_names, "layer",
                                   "Each feed-forward block's part"), key="attr_mlps")
with c2:
    st.markdown(f"**The largest parts** of the logit of {what}")
    static_table(pd.DataFrame([{"part": name, "contribution": round(value, 3)} for name, value in parts.top(10)]))
c2.caption(f"The embedding adds {parts.embedding:+.3f}. All {L * H} heads, {L} blocks"
           f"{', the biases' if model.cfg.bias else ''} and the embedding add up to **{parts.total:.3f}**; "
           f"the model's own logit{' difference' if other is not None else ''} is **{parts.logit:.3f}**. "
           "L3 H5: layer 3, head 5 (from 0).")

# -- the contribution graph ---------------------------------------------------------------------
st.header("How information got there: the contribution graph")
st.markdown(
    "Every vector in the stream is a sum too: after attention, the vector that was there plus what each head "
    "moved from each earlier position; after the feed-forward block, the vector plus the block's output. "
    "A part's **share** is how much closer it brings the sum: max(|y|₁ − |y − part|₁, 0), divided over all "
    "the parts (Ferrando & Voita 2024). The graph keeps the edges with a share above the threshold that "
    "reach the chosen position's last vector. Grey: the stream carrying on; blue: attention moving information "
    "between positions; orange: a feed-forward block.")
threshold = st.slider("threshold: the smallest share drawn", 0.02, 0.5, 0.04, 0.01, key="attr_threshold")
graph = graph_of(model, recording, drawn.key, tuple(ids))
edges = sorted(graph.edges(position, threshold), key=lambda edge: -edge.weight)
if len(edges) > MAX_DRAWN_EDGES:
    st.caption(f"{len(edges):,} edges pass the threshold; the strongest {MAX_DRAWN_EDGES:,} are drawn. Raise the "
               "threshold to see the main routes alone.")
    edges = edges[:MAX_DRAWN_EDGES]
nodes, lines = charts.graph_frames(edges, labels, L)
st.altair_chart(charts.contribution_graph(nodes, lines, [generation.label(tokenizer, t) for t in ids], L),
                key="attr_graph")
between = [edge for edge in edges if edge.kind == "attention" and edge.source.position != edge.target.position]
if between:
    top = between[0]
    st.caption(f"{len(edges)} edges. The strongest move between positions: layer {top.target.layer}, from "
               f"{labels[top.source.position]} to {labels[top.target.position]} ({top.weight:.0%} of that vector, "
               f"mostly head {top.head}).")
else:
    st.caption(f"{len(edges)} edges, none between positions at this threshold: lower it to see attention's routes.")

blocks = sorted({(edge.target.layer, edge.target.kind, edge.target.position) for edge in edges
                 if edge.target.kind in ("mid", "ffn")}, key=lambda block: (-block[0], block[1], block[2]))
if blocks:
    kinds = {"mid": "attention", "ffn": "feed-forward"}
    block = st.selectbox("a block in the graph: what does it write?", blocks, key="attr_block",
                         format_func=lambda b: f"layer {b[0]} {kinds[b[1]]} at {labels[b[2]]}")
    layer, kind, at = block
    written = recording.layers[layer].attention[at] if kind == "mid" else recording.layers[layer].feed_forward[at]
    up, down = promoted_tokens(model, recording, written, at)
    c1, c2 = st.columns(2)
    for column, title, rows in ((c1, "tokens it promotes", up), (c2, "tokens it suppresses", down)):
        column.markdown(f"**{title}**")
        with column:
            static_table(pd.DataFrame([{"token": repr(generation.label(tokenizer, t)), "logit change": round(v, 3)}
                                       for t, v in rows]))
    st.caption("The block's output at that position read out like the last vector: through the final norm (its "
               "scale frozen) and the output head, as if nothing came after.")

st.subheader("What a contribution is, and what it is not")
st.markdown(
    "A contribution is **a share of a sum**: how much of the final vector, or of the logit, a part wrote. It "
    "is not a cause. A head with a large share might be replaceable: remove it and another route could write "
    "the same; a part with a small direct share can still matter by changing what later layers read. To "
    "test a cause, change the part and run the model again (the causal mask on **6 · Decoder** is checked "
    "that way; Build it runs the model with your function in place of minitx's).")

show_source(attribute, record, contribution_graph, proximity)
check_yourself(
    "The parts above add up to the logit only because the final norm's scale s is frozen. Why is the sum not "
    "exact without freezing it?",
    "RMSNorm divides the whole vector by s = sqrt(mean(r²) + eps), and s depends on every part at once: "
    "it is not a sum of one term per part. Frozen at its value on the real vector, the division is the same "
    "for every part, and the logit becomes a sum of one term each (a linear map of a sum).")
