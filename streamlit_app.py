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
    from ui.pages import PAGES

    pages = [st.Page(file, title=title, icon=icon, default=file.endswith("home.py")) for file, title, icon in PAGES]
    st.navigation(pages).run()


# A training worker, started with multiprocessing's spawn during a script run, imports this file
# again as __mp_main__: there it must not import Streamlit or draw a page.
if __name__ == "__main__":
    main()
