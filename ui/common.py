"""Small pieces every page uses: the source expander, the check-yourself question, shapes and small tables."""

from __future__ import annotations

import inspect
import re

import pandas as pd
import streamlit as st


@st.cache_data
def _source(module: str, qualname: str) -> str:
    import importlib

    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def source_code(*objects) -> None:
    """The source of minitx functions and classes, each under its full name."""
    for obj in objects:
        st.caption(f"`{obj.__module__}.{obj.__qualname__}`")
        st.code(_source(obj.__module__, obj.__qualname__), language="python")


def show_source(*objects, title: str = "The minitx code behind this page") -> None:
    """An expander with the source of the minitx functions and classes the page used."""
    with st.expander(title):
        source_code(*objects)


def check_yourself(question: str, answer: str) -> None:
    st.markdown(f"**Check yourself.** {question}")
    with st.expander("Answer"):
        st.markdown(answer)


def shapes(named: dict[str, tuple[int, ...]], legend: str = "") -> None:
    """A small table of tensor shapes, written like [1, 10, 4, 32]."""
    frame = pd.DataFrame({"tensor": list(named), "shape": [str(list(s)) for s in named.values()]})
    static_table(frame)
    if legend:
        st.caption(legend)


_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def literal_markdown(text: str) -> str:
    """Text that Markdown shows as typed: every ASCII punctuation mark backslash-escaped, so a
    stage named '+ rope positions' is not a list item and a token '*' is not emphasis."""
    return _ASCII_PUNCTUATION.sub(r"\\\1", text)


def review_text(text: str) -> str:
    """An IMDB review for reading: its `<br />` line breaks as spaces."""
    return text.replace("<br />", " ")


def static_table(frame: pd.DataFrame, width: str = "content") -> None:
    """A small table drawn as plain HTML (st.table): nothing to scroll or sort, so no data grid.

    The first st.dataframe a browser meets loads the data-grid code: with no run going, a first
    visit to the Encoder page took 0.73-1.00 s with one and 0.41-0.58 s without (3 tries each).
    st.table reads its cells as Markdown, so text cells and headers are escaped to show as typed.
    """
    shown = frame.rename(columns=lambda c: literal_markdown(str(c)))
    st.table(shown.map(lambda v: literal_markdown(v) if isinstance(v, str) else v), hide_index=True, width=width)


def table_height(frame: pd.DataFrame) -> int:
    """Pixels for a dataframe to show every row without its own scroll bar."""
    return 38 + 35 * len(frame)


def token_labels(tokens: list[str]) -> list[str]:
    """Unique, ordered axis labels: '0 [CLS]', '1 the', ... (a token may repeat)."""
    return [f"{i} {t}" for i, t in enumerate(tokens)]


def _keep(store: str) -> None:
    st.session_state[store] = st.session_state["w_" + store]


def remembered(store: str, default) -> dict:
    """Widget arguments that keep its value in session_state[store] across page switches.

    Streamlit forgets a widget's own key when a page without it runs; a plain key
    that no widget owns survives, so the value lives there and is copied in and out.
    """
    widget = "w_" + store
    st.session_state[widget] = st.session_state.setdefault(store, default)
    return {"key": widget, "on_change": _keep, "args": (store,)}
