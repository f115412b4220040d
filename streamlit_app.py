"""minitx playground: the frame. Navigation over the pages, and a training run making way for them.

Every page starts with `model_sidebar()`, the shared "your model" sidebar, so
a page opened on its own (a deep link on a fresh server) still has it.
"""

from pathlib import Path

# The tab's icon: a file, so the browser gets it inline (a :material/...: icon is fetched from
# fonts.gstatic.com on every page switch, and is missing offline).
ICON = Path(__file__).parent / "ui" / "icon.svg"


def main() -> None:
    import streamlit as st

    from ui.live import give_way_while_this_page_is_drawn
    from ui.preload import preload_element_code

    st.set_page_config(page_title="minitx: transformers from scratch", page_icon=ICON,
                       layout="wide")
    pages = [
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
    preload_element_code()
    st.navigation(pages).run()


# `streamlit run` runs this file as __main__ (and makes it sys.modules["__main__"] while it runs).
# A training worker, started by multiprocessing's spawn from inside that run, runs it again as
# __mp_main__ while it starts up: there it must not import Streamlit, make a run registry of its
# own or draw the Home page (1.8 s and 250 MB of a worker's start until 2026-11-22).
if __name__ == "__main__":
    main()
