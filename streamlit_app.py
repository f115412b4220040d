"""minitx playground: the frame. Navigation over the pages, and a training run making way for them.

Every page starts with `model_sidebar()`, the shared "your model" sidebar, so
a page opened on its own (a deep link on a fresh server) still has it.
"""

import streamlit as st

from ui.live import give_way_while_this_page_is_drawn

st.set_page_config(page_title="minitx: transformers from scratch", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/tokenization.py", title="1 · Tokenization", icon=":material/text_fields:"),
    st.Page("app_pages/embeddings.py", title="2 · Embeddings", icon=":material/scatter_plot:"),
    st.Page("app_pages/positional.py", title="3 · Positional encoding", icon=":material/timeline:"),
    st.Page("app_pages/attention.py", title="4 · Grouped-query attention", icon=":material/hub:"),
    st.Page("app_pages/encoder.py", title="5 · Encoder stack", icon=":material/layers:"),
    st.Page("app_pages/training.py", title="6 · Training", icon=":material/monitoring:"),
    st.Page("app_pages/runs.py", title="7 · Runs & predict", icon=":material/compare_arrows:"),
]

give_way_while_this_page_is_drawn()     # a run in progress pauses a moment: this page comes first
st.navigation(PAGES).run()
