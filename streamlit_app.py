"""minitx playground: the frame. Navigation over the pages; every number comes from minitx.

The concept pages and the training page arrive with their own issues; until
then the frame shows the home page only.
"""

import streamlit as st

st.set_page_config(page_title="minitx: transformers from scratch", page_icon="🔎", layout="wide")

pages = [st.Page("pages/home.py", title="Home", icon="🏠", default=True)]
st.navigation(pages).run()
