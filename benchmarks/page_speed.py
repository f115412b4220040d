"""How fast the pages render, measured with streamlit.testing.v1.AppTest (no browser).

    python benchmarks/page_speed.py          # writes benchmarks/results/page-speed.json

Targets (default sizes): first render of any page under 3 s once the server
is warm (Python modules imported, the IMDB sample and tokenizers cached on
disk), and a slider move re-rendered in under 300 ms. For each page:

- first_render_s: a new session opening the page, with Streamlit's in-memory
  caches cleared (the worst case for a learner arriving);
- rerender_s: the median of moving a sidebar slider (heads 4 -> 8 -> 4 ...)
  and the page's own first slider, in that same session.
AppTest runs the script the way the server does, but draws nothing: the
browser adds its own time on top (see the browser test's timings).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import write_result  # noqa: E402

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(HERE.parent / "streamlit_app.py")
PAGES = ["app_pages/home.py", "app_pages/tokenization.py", "app_pages/embeddings.py",
         "app_pages/positional.py", "app_pages/attention.py", "app_pages/encoder.py",
         "app_pages/training.py"]
MOVES = 6


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    AppTest.from_file(APP, default_timeout=120).run()    # warm: imports, disk caches
    for page in PAGES:                                   # and each page's tokenizers on disk
        AppTest.from_file(APP, default_timeout=120).run().switch_page(page).run()
    results = {}
    for page in PAGES:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(APP, default_timeout=120).switch_page(page)
        first = timed(at.run)
        assert not at.exception, (page, at.exception)
        moves = []
        for n in range(MOVES):
            heads = at.select_slider(key="w_model_n_heads")
            moves.append(timed(lambda: heads.set_value(8 if n % 2 == 0 else 4).run()))
        own = [w for w in at.main.slider if w.key] + [w for w in at.main.select_slider if w.key]
        own_moves = []
        if own:
            key, kind = own[0].key, own[0].type
            for n in range(MOVES):
                widget = getattr(at, kind)(key=key)
                target = (widget.max if n % 2 == 0 else widget.min) if kind == "slider" else \
                    widget.options[-1 if n % 2 == 0 else 0]
                if kind == "select_slider" and str(target).isdigit():
                    target = int(target)
                own_moves.append(timed(lambda: widget.set_value(target).run()))
        results[page] = {"first_render_s": round(first, 3),
                         "sidebar_slider_rerender_median_s": round(statistics.median(moves), 3),
                         "sidebar_slider_rerender_max_s": round(max(moves), 3),
                         "page_slider": own[0].key if own else None,
                         "page_slider_rerender_median_s": round(statistics.median(own_moves), 3) if own_moves else None}
        print(page, results[page], flush=True)
    write_result("page-speed", {
        "pages": results,
        "targets": {"first_render_s": 3.0, "rerender_s": 0.3},
        "worst_first_render_s": max(r["first_render_s"] for r in results.values()),
        "worst_sidebar_rerender_median_s": max(r["sidebar_slider_rerender_median_s"] for r in results.values()),
    })


if __name__ == "__main__":
    main()
