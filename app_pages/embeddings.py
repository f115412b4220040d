"""Page 2: embeddings. Each id picks a row of a learned table; training gives the rows meaning."""

import altair as alt
import pandas as pd
import streamlit as st
import torch

from minitx.encoder import SentimentClassifier
from minitx.inspect import cosine_similarity_matrix, nearest_neighbours, pca_2d
from ui import tour
from ui.charts import heatmap, tips
from ui.common import check_yourself, shapes, show_source, static_table, token_labels
from ui.model_sidebar import model_sidebar
from ui.models import model_choice
from ui.resources import newest_run, positivity, random_model, sentence_or_stop

PROBE_WORDS = ["great", "excellent", "wonderful", "loved", "best", "perfect", "beautiful", "fun",
               "bad", "worst", "awful", "boring", "terrible", "waste", "poor", "stupid",
               "film", "movie", "plot", "actor", "the", "and", "story", "music"]

def pca_chart(frame: pd.DataFrame, title: str) -> alt.LayerChart:
    """Words at their 2-D PCA positions, coloured by how positive they are in IMDB."""
    base = alt.Chart(frame, title=title).encode(
        x=alt.X("x:Q"), y=alt.Y("y:Q"),
        tooltip=tips("word") + [alt.Tooltip("positivity (log-odds):Q", format=".2f")])
    points = base.mark_circle(size=120, stroke="#334155", strokeWidth=0.5).encode(
        color=alt.Color("positivity (log-odds):Q", scale=alt.Scale(scheme="redblue", domainMid=0)))
    labels_layer = base.mark_text(align="left", dx=8, fontSize=12, color="#1e293b").encode(text=alt.Text("word:N"))
    return (points + labels_layer).properties(height=360)


cfg = model_sidebar()
st.title("Embeddings")
tour.panel("embeddings")
st.markdown(
    "An embedding table has one row of D numbers per vocabulary entry. Looking up a token is "
    "just picking its row: `embedding(ids)` turns (B, T) ids into (B, T, D) vectors. The rows "
    "start random; training moves them so that words used alike end up close. minitx multiplies "
    "the rows by √D so that they are as large as the positional code added next.")

run, why_not = newest_run()
if run is not None:
    st.success(f"Using the trained run **{run.path.name}** (test accuracy "
               f"{run.metrics.get('test_accuracy') or float('nan'):.3f}).")
    model, tokenizer = run.model, run.tokenizer
else:
    from ui.resources import playground_tokenizer

    st.info(f"{why_not.capitalize()}: showing random-init weights. Train one with "
            "`python -m minitx.train --preset quick` (under 2 minutes on 2 CPU cores) and reload.")
    tokenizer, _ = playground_tokenizer()
    if tokenizer is None:
        st.stop()
    model = random_model(cfg.replace(vocab_size=tokenizer.vocab_size))

text = st.text_input("A sentence", "a great film with a terrible ending", key="emb_text")
ids, tokens = sentence_or_stop(text, max_tokens=16, tokenizer=tokenizer)

table = model.embedding.weight.detach()                                        # (V, D)
rows = table[torch.tensor(ids)]                                                # (T, D)
dims = min(32, rows.size(1))
st.altair_chart(heatmap(rows[:, :dims], token_labels(tokens), [str(d) for d in range(dims)],
                        value="value", row_title="token", col_title="dimension", scheme="redblue",
                        cell=16, title=f"the rows the ids pick (first {dims} of {rows.size(1)} dimensions)"),
                key="emb_rows", width="content")
scaled = rows * model.embed_scale
c1, c2 = st.columns(2)
c1.metric("mean row length", f"{rows.norm(dim=-1).mean():.3f}")
c2.metric(f"after × √D = × {model.embed_scale:.1f}", f"{scaled.norm(dim=-1).mean():.3f}")
shapes({"ids": (1, len(ids)), "embedding table": tuple(table.shape), "looked-up rows": (1, len(ids), rows.size(1))})

st.subheader("How alike are the input's tokens?")
st.altair_chart(heatmap(cosine_similarity_matrix(rows), token_labels(tokens), token_labels(tokens),
                        value="cosine", row_title="token", col_title="other token", scheme="redblue",
                        domain=(-1.0, 1.0), title="cosine similarity between token vectors"),
                key="emb_cosine", width="content")

st.subheader("Word vectors in two dimensions")
scores = positivity(tokenizer, str(run.path) if run is not None else "sample")
words = [w for w in PROBE_WORDS if tokenizer.token_to_id(w) is not None]
if scores is not None and len(words) >= 3:
    word_ids = [tokenizer.token_to_id(w) for w in words]
    tables = {"random init": random_model(model.cfg).embedding.weight.detach()}
    if run is not None:
        tables = {"trained": table, **tables}
    for column, (name, weights) in zip(st.columns(len(tables)), tables.items()):
        xy = pca_2d(weights[torch.tensor(word_ids)])
        frame = pd.DataFrame({"word": words, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
                              "positivity (log-odds)": [scores.get(i, 0.0) for i in word_ids]})
        column.altair_chart(pca_chart(frame, f"PCA of these words' rows ({name})"), key=f"emb_pca_{name}")
    st.caption("Colour: how much more often the word appears in positive than in negative IMDB "
               "reviews. After training, positive and negative words drift apart; at random init "
               "the layout ignores meaning." + ("" if run is not None else " Train a run to see the "
               "trained layout beside this one."))

    probe = st.selectbox("nearest neighbours of", words, key="emb_probe")
    neighbours = nearest_neighbours(table, tokenizer.token_to_id(probe), k=8)
    static_table(pd.DataFrame([{"token": tokenizer.id_to_token(i), "cosine": f"{s:.3f}"} for i, s in neighbours]))

choice = model_choice("classify")
if choice.pretrained is not None:
    real = choice.pretrained
    real_table = real.model.embedding.weight.detach()                                # (V, D)
    st.subheader(f"In a real model's table: {real.name}")
    st.markdown(f"{real.name} learnt its {real_table.size(0):,} x {real_table.size(1)} table from trillions of "
                "tokens, not from IMDB. A word in the middle of a sentence is its own token with the space in "
                "front (\" great\"), so those are the rows drawn here, beside the model above.")
    real_scores = positivity(real.tokenizer, f"pretrained:{real.source}")
    spaced = {w: real.tokenizer.encode(" " + w).ids for w in PROBE_WORDS}
    real_words = [w for w, found in spaced.items() if len(found) == 1]               # one token each
    real_ids = [spaced[w][0] for w in real_words]
    xy = pca_2d(real_table[torch.tensor(real_ids)])
    frame = pd.DataFrame({"word": real_words, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
                          "positivity (log-odds)": [(real_scores or {}).get(i, 0.0) for i in real_ids]})
    left, right = st.columns(2)
    left.altair_chart(pca_chart(frame, f"PCA of these words' rows ({real.name})"), key="emb_pca_pretrained")
    with right:
        probe = st.selectbox("nearest neighbours in its table of", real_words, key="emb_probe_pretrained")
        neighbours = nearest_neighbours(real_table, spaced[probe][0], k=10)
        static_table(pd.DataFrame([{"token": repr(real.tokenizer.piece(i)), "cosine": f"{s:.3f}"}
                                   for i, s in neighbours]))
    st.caption("Its neighbours are spellings and relatives of the word (\" good\", \" Good\", \"good\") and words "
               "used alike: a pretrained table has learnt far more than one IMDB run can.")

show_source(SentimentClassifier.embed, pca_2d, nearest_neighbours)
check_yourself(
    "The quick preset's table is 20,000 × 128. How many of the model's parameters is that, and "
    "why is it fine that most rows hardly change in one training run?",
    "2,560,000 parameters, most of the model. Only rows of tokens that appear in a batch get a "
    "gradient; rare words are seen a few times, so their rows stay close to random, which is one "
    "reason rare tokens generalise badly.")
