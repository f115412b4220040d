"""Home: what the playground is, the path through it, and the pipeline with live shapes."""

import pandas as pd
import streamlit as st

from minitx.data import truncate
from minitx.inspect import pipeline_shapes
from minitx.tokenizer import CLS_ID
from ui import tour
from ui.common import static_table
from ui.model_sidebar import model_sidebar
from ui.resources import playground_tokenizer

cfg = model_sidebar()

st.title("minitx: build a transformer, then watch it learn")
tour.panel("home")
st.markdown(
    "A transformer, written from scratch in PyTorch, that you take apart one idea at "
    "a time and then train on IMDB movie reviews: as an encoder that reads a review's sentiment, "
    "and as a decoder that learns to write reviews. Every picture here is computed by the "
    "`minitx` package; every page shows the source of the function it used. The model in "
    "the sidebar is *your model*: every page shows that one.")

st.subheader("The path")
st.markdown(
    "1. **Tokenization**: text becomes integer ids.\n"
    "2. **Embeddings**: each id picks a row of a learned table.\n"
    "3. **Positional encoding**: attention cannot see order; positions have to be added.\n"
    "4. **Grouped-query attention**: every token looks at every other; heads may share keys and values.\n"
    "5. **Encoder stack**: attention, add & norm, feed-forward, add & norm, N times; then pool.\n"
    "6. **Decoder & generation**: the same block with a causal mask writes text; the KV cache makes it fast.\n"
    "7. **What built this answer**: which heads and blocks wrote the prediction, and the routes it took.\n"
    "8. **Quantization**: weights in 4 bits, as a GGUF file stores them: what it costs, what it buys.\n"
    "9. **Build it**: write each piece yourself; minitx checks it, then runs the real model with it.\n"
    "10. **Training**: fit either to IMDB and watch loss, accuracy or bits per character move.\n"
    "11. **Runs & predict**: compare runs, ask a classifier about your review, let a language model write.")

st.subheader("Guided tours")
st.markdown("A path through the pages, one paragraph and one picture a step. Leave whenever you like: "
            "the tour waits, and resumes here where you left it.")
tour.home_buttons()

st.subheader("One sentence through your model")
text = st.text_input("Type a sentence", "This movie was surprisingly good!", max_chars=100_000)
tokenizer, origin = playground_tokenizer()
if tokenizer is None:
    st.warning(f"No tokenizer available: {origin}.")
elif not text.strip():
    st.info("Type a sentence to see it flow through the model.")
else:
    ids = tokenizer.encode(text).ids
    kept = [CLS_ID] + truncate(ids, cfg.max_len - 1)
    if len(ids) + 1 > cfg.max_len:
        st.caption(f"{len(ids) + 1} tokens are more than max_len {cfg.max_len}: kept the first "
                   f"and last ones.")
    st.caption(f"Tokenizer: {origin}. [CLS] is added in front.")
    st.code(" ".join(tokenizer.id_to_token(i) or "?" for i in kept[:60]), language=None)
    stages = pipeline_shapes(cfg, len(kept))
    table = pd.DataFrame({"stage": [s.name for s in stages],
                          "shape": [str(list(s.shape)) for s in stages],
                          "what it is": [s.meaning for s in stages]})
    static_table(table, width="stretch")

with st.expander("Check yourself: a tensor inside attention has shape [1, 10, 4, 128]. What are the four numbers?"):
    st.markdown("Batch of **1** review, **10** tokens, **4** heads, head size **128** "
                "(so d_model = 4 x 128 = 512). In the table above, that is the *queries* row "
                "for a 10-token input with d_model 512 and 4 heads: try it in the sidebar.")
