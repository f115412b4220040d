"""minitx playground: the frame. Navigation over the pages, nothing else.

Every page starts with `model_sidebar()`, the shared "your model" sidebar, so
a page opened on its own (a deep link on a fresh server) still has it.
"""

from pathlib import Path

# The tab's icon: a file, so the browser gets it inline (a :material/...: icon is fetched from
# the internet on every page switch, and is missing offline).
ICON = Path(__file__).parent / "ui" / "icon.svg"


def main() -> None:
    import streamlit as st

    st.set_page_config(page_title="minitx: transformers from scratch", page_icon=ICON, layout="wide")
    pages = [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/tokenization.py", title="1 · Tokenization", icon=":material/text_fields:"),
        st.Page("app_pages/embeddings.py", title="2 · Embeddings", icon=":material/scatter_plot:"),
        st.Page("app_pages/positional.py", title="3 · Positional encoding", icon=":material/timeline:"),
        st.Page("app_pages/attention.py", title="4 · Grouped-query attention", icon=":material/hub:"),
        st.Page("app_pages/encoder.py", title="5 · Encoder stack", icon=":material/layers:"),
        st.Page("app_pages/decoder.py", title="6 · Decoder & generation", icon=":material/edit_note:"),
        st.Page("app_pages/training.py", title="7 · Training", icon=":material/monitoring:"),
        st.Page("app_pages/runs.py", title="8 · Runs & predict", icon=":material/compare_arrows:"),
    ]
    st.navigation(pages).run()


# A training worker, started with multiprocessing's spawn during a script run, imports this file
# again as __mp_main__: there it must not import Streamlit or draw a page.
if __name__ == "__main__":
    main()
