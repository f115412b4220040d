"""The app's pages: file, title and icon, in order. The frame (streamlit_app.py) builds its
navigation from this list, and pages that link to each other read their titles here."""

from __future__ import annotations

PAGES = [
    ("app_pages/home.py", "Home", ":material/home:"),
    ("app_pages/tokenization.py", "1 · Tokenization", ":material/text_fields:"),
    ("app_pages/embeddings.py", "2 · Embeddings", ":material/scatter_plot:"),
    ("app_pages/positional.py", "3 · Positional encoding", ":material/timeline:"),
    ("app_pages/attention.py", "4 · Grouped-query attention", ":material/hub:"),
    ("app_pages/encoder.py", "5 · Encoder stack", ":material/layers:"),
    ("app_pages/decoder.py", "6 · Decoder & generation", ":material/edit_note:"),
    ("app_pages/attribution.py", "7 · What built this answer", ":material/account_tree:"),
    ("app_pages/quantization.py", "8 · Quantization", ":material/compress:"),
    ("app_pages/build.py", "9 · Build it", ":material/construction:"),
    ("app_pages/training.py", "10 · Training", ":material/monitoring:"),
    ("app_pages/runs.py", "11 · Runs & predict", ":material/compare_arrows:"),
]


def page_file(name: str) -> str:
    """'attention' -> 'app_pages/attention.py'."""
    return f"app_pages/{name}.py"


def page_title(name: str) -> str:
    """'attention' -> '4 · Grouped-query attention'."""
    return next(title for file, title, _ in PAGES if file == page_file(name))
