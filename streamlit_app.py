"""minitx playground: the frame. Navigation over the pages, nothing else.

Every page starts with `model_sidebar()`, the shared "your model" sidebar, so
a page opened on its own (a deep link on a fresh server) still has it.
"""

import streamlit as st

st.set_page_config(page_title="minitx: transformers from scratch", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/attention.py", title="4 · Grouped-query attention", icon="🎯"),
]

st.navigation(PAGES).run()
