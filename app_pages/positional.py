"""Page 3: positional encoding. Attention is blind to order until positions are added."""

import pandas as pd
import streamlit as st
import torch

from minitx.inspect import cosine_similarity_matrix, order_blindness, rope_pair_path, rope_relative_scores
from minitx.positional import apply_rope, sinusoidal_table
from ui import tour
from ui.charts import heatmap, lines, rope_circle
from ui.common import check_yourself, shapes, show_source, static_table
from ui.labs import call_learner, in_model_section, mine_caption, use_my_code
from ui.model_sidebar import model_sidebar
from ui.resources import playground_tokenizer, random_model

cfg = model_sidebar()
st.title("Positional encoding")
tour.panel("positional")
st.markdown(
    "Attention compares every token with every other, but nothing in `softmax(QKᵀ/√Dh)V` knows "
    "*where* a token stands: shuffle the words and each output is shuffled the same way. So "
    "position must be put in. The **sinusoidal** code of the 2017 paper adds a fixed pattern of "
    "sines and cosines of different wavelengths to each embedding; a **learned** table adds a "
    "trained vector per position; **RoPE** instead rotates queries and keys by an angle that grows "
    "with position, so that attention scores depend on the *distance* between tokens.")

positions = st.slider("positions shown", 8, 128, 48, key="pe_positions")
table = sinusoidal_table(positions, cfg.d_model)                           # (T, D)
mine = use_my_code("sinusoidal")
if mine:
    yours, problem = call_learner("sinusoidal", mine, positions, cfg.d_model)
    if problem or not isinstance(yours, torch.Tensor) or yours.shape != table.shape:
        st.error(f"Your sinusoidal could not draw the table: {problem or 'it returned the wrong shape'}.")
    else:
        mine_caption("sinusoidal")
        st.caption(f"Largest difference from minitx's table: {(yours - table).abs().max():.2e}.")
        table = yours
dims = list(range(min(cfg.d_model, 64)))
st.altair_chart(heatmap(table[:, dims].T.contiguous(), [str(d) for d in dims], [str(p) for p in range(positions)],
                        value="PE", row_title="dimension", col_title="position", scheme="redblue",
                        cell=8, domain=(-1.0, 1.0), title=f"sinusoidal table, first {len(dims)} of {cfg.d_model} dimensions"),
                key="pe_table", width="content")

chosen = st.multiselect("dimensions as curves", list(range(cfg.d_model)), default=[0, 1, 8, 32 % cfg.d_model],
                        key="pe_dims", max_selections=6)
if chosen:
    frame = pd.DataFrame([{"position": p, "dimension": f"dim {d}", "value": float(table[p, d])}
                          for d in chosen for p in range(positions)])
    st.altair_chart(lines(frame, "position", "value", "dimension",
                          title="low dimensions turn fast, high ones slowly"), key="pe_curves")

st.subheader("Nearby positions look alike")
similarity = cosine_similarity_matrix(table)                               # (T, T)
st.altair_chart(heatmap(similarity, [str(p) for p in range(positions)], [str(p) for p in range(positions)],
                        value="cosine", row_title="position", col_title="other position", cell=6,
                        title="cosine similarity of position codes"), key="pe_similarity", width="content")
shapes({"sinusoidal table": tuple(table.shape), "embeddings": (1, positions, cfg.d_model)},
       "The table is added to the embeddings, position by position: same shape, no new parameters.")

st.subheader("Without positions, word order is invisible")
tokenizer, origin = playground_tokenizer()
a = st.text_input("sentence", "man bites dog", key="pe_a")
b = st.text_input("the same words, reordered", "dog bites man", key="pe_b")
if tokenizer is None:
    st.warning(f"No tokenizer: {origin}.")
elif sorted(tokenizer.encode(a).ids) != sorted(tokenizer.encode(b).ids) or not a.strip():
    st.info("Use the same words in another order (the demo needs the same tokens).")
else:
    from minitx.tokenizer import CLS_ID

    ids = [[CLS_ID] + tokenizer.encode(s).ids for s in (a, b)]
    rows = []
    for pe in ("none", cfg.pos_encoding if cfg.pos_encoding != "none" else "sinusoidal"):
        model_cfg = cfg.replace(pos_encoding=pe, vocab_size=tokenizer.vocab_size)
        pooled = order_blindness(random_model(model_cfg), ids)               # (2, D)
        rows.append({"positional encoding": pe,
                     "max |pooled(a) − pooled(b)|": f"{(pooled[0] - pooled[1]).abs().max().item():.2e}"})
    static_table(pd.DataFrame(rows))
    st.caption("Same random weights in both rows. Without positions the mean-pooled outputs are "
               "identical (up to float rounding): the model cannot tell who bit whom.")

st.subheader("RoPE: rotate, and only the distance counts")
head_dim = max(2, cfg.head_dim - cfg.head_dim % 2)
shown_pairs = sorted({0, 1, head_dim // 8, head_dim // 2 - 1} & set(range(head_dim // 2)))
path = pd.DataFrame(rope_pair_path(head_dim, 16, shown_pairs))
circle = rope_circle(path, shown_pairs)
st.altair_chart(circle, key="pe_rope_pairs", width=460)
st.caption(f"The vector (1, 0) in a few of the {head_dim // 2} pairs of a {head_dim}-dimensional head, at "
           "positions 0 to 15: pair 0 turns one radian per position, later pairs ever more slowly. "
           "Queries and keys are turned the same way, so their dot product only sees the difference "
           "of the angles, that is, the distance m − n:")
pairs = [(3, 1), (10, 8), (40, 38), (5, 1), (20, 16)]
scores = rope_relative_scores(head_dim, pairs)
static_table(pd.DataFrame([{"query position m": m, "key position n": n, "m − n": m - n, "q_m · k_n": f"{s:.5f}"}
                           for (m, n), s in zip(pairs, scores)]))
st.caption("The same q and k vectors placed at different positions: equal offsets give equal "
           f"scores (head size {head_dim}). Each pair of dimensions is rotated by m·θᵢ.")

mine = use_my_code("rope")
if mine:
    in_model_section("rope", mine, "lm", cfg, "The acting was", pos_encoding="rope")

show_source(sinusoidal_table, apply_rope)
check_yourself(
    "Why does mean pooling make the 'man bites dog' demo exact, while without pooling only "
    "the *set* of outputs is the same?",
    "Without positions each token's output depends only on the token and the whole bag of "
    "tokens, so reordering the input reorders the outputs (permutation equivariance). The mean "
    "of a set does not depend on its order, so the pooled vector, and the logits, are identical.")
