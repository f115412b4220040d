"""How fast the pages render, measured with streamlit.testing.v1.AppTest (no browser).

    python benchmarks/page_speed.py          # writes benchmarks/results/page-speed.json
    python benchmarks/page_speed.py --smollm2   # the pages drawing SmolLM2: page-speed-smollm2.json

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


SMOLLM2_PAGES = ["app_pages/tokenization.py", "app_pages/embeddings.py", "app_pages/attention.py",
                 "app_pages/decoder.py", "app_pages/attribution.py"]
REPEATS = 5


def memory_mb(pid: int | str = "self") -> dict:
    """A process's resident memory (RSS) and its proportional share (PSS: a page two processes map
    counts half in each), in MB, from /proc (Linux)."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name.lower() + "_mb"] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return values


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset_peak() (VmHWM), in MB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 / 1e6 for line in f if line.startswith("VmHWM"))


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:     # "5" resets the peak resident size to the current one
        f.write("5")


def analyses(model) -> dict:
    """Direct logit attribution at the last position of a 10-token prompt, and the contribution graph of a
    16-token one, each a median of 5 (from the forward pass on); then the page's second draw of the graph
    (its cache); and the memory they add over the loaded model (peak, after a warm forward)."""
    from minitx.attribution import attribute, record
    from minitx.contribution_graph import contribution_graph
    from minitx.analysis_input import MAX_TOKENS

    ids = model.tokenizer.encode(ATTENTION_HEAD_TEXT).ids
    ten, sixteen, limit = ids[:10], ids[:16], (ids * 4)[:MAX_TOKENS]
    record(model.model, limit)                            # weights paged in, allocator warm
    reset_peak()
    before = memory_mb()["rss_mb"]

    def attribution():
        recording = record(model.model, ten)
        attribute(model.model, recording, int(recording.logits[-1].argmax()))

    def graph():
        contribution_graph(model.model, recording := record(model.model, sixteen)).edges(-1, 0.04)
        return recording

    attribution_s = [round(timed(attribution), 3) for _ in range(REPEATS)]
    graph_s = [round(timed(graph), 3) for _ in range(REPEATS)]
    contribution_graph(model.model, record(model.model, limit)).edges(-1, 0.04)      # the longest prompt allowed
    added = round(peak_rss_mb() - before, 1)
    return {"attribution_10_tokens_s": attribution_s, "attribution_median_s": statistics.median(attribution_s),
            "graph_16_tokens_s": graph_s, "graph_median_s": statistics.median(graph_s),
            "memory_added_peak_mb": added, "memory_measured_on": f"prompts of 10, 16 and {MAX_TOKENS} tokens"}


def cached_graph_redraw_s() -> list[float]:
    """The attribution page with SmolLM2, the threshold moved: the graph comes from the page's cache."""
    from ui.models import PRETRAINED

    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["drawn_model"] = PRETRAINED
    at.switch_page("app_pages/attribution.py").run()
    times = []
    for n in range(REPEATS):
        slider = at.slider(key="attr_threshold")
        times.append(round(timed(lambda: slider.set_value(0.1 if n % 2 == 0 else 0.04).run()), 3))
        assert not at.exception, at.exception
    return times


def smollm2() -> None:
    """With SmolLM2 loaded once (as a server keeps it), each model page's first draw in a new session,
    the head finder, the first token of a chat answer, and the memory of this process and a lab worker
    holding the model too. Each a median of 5."""
    from minitx.generate import generate
    from minitx.heads import find_heads
    from minitx.labs.worker import LabWorker
    from ui.models import PRETRAINED, pretrained

    model, problem = pretrained()
    assert model is not None, problem
    analysed = analyses(model)
    print(analysed, flush=True)
    for page in SMOLLM2_PAGES:                            # warm: imports, disk caches
        at = AppTest.from_file(APP, default_timeout=300)
        at.session_state["drawn_model"] = PRETRAINED
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
    pages = {}
    for page in SMOLLM2_PAGES:
        times = []
        for _ in range(REPEATS):
            st.cache_data.clear()                         # not cache_resource: the model stays loaded
            at = AppTest.from_file(APP, default_timeout=300)
            at.session_state["drawn_model"] = PRETRAINED
            at.switch_page(page)
            times.append(round(timed(at.run), 3))
            assert not at.exception, (page, at.exception)
        pages[page] = {"first_draw_s": times, "median_s": statistics.median(times)}
        print(page, pages[page], flush=True)
    text_ids = model.tokenizer.encode(ATTENTION_HEAD_TEXT).ids
    finder = [round(timed(lambda: find_heads(model.model, text_ids, 50, 17, model.model.cfg.vocab_size)), 3)
              for _ in range(REPEATS)]
    ids = model.chat.encode([{"role": "user", "content": "What is the capital of France?"}])
    first_token = [round(generate(model.model, ids, 1, temperature=0, n_top=0, engine=model.engine).seconds, 4)
                   for _ in range(REPEATS)]
    worker = LabWorker()
    source = "def attention(q, k, v, mask=None):\n    import minitx.attention as a\n    return a.explicit_attention(q, k, v, mask)\n"
    answer = worker.request({"op": "try", "lab": "attention", "source": source, "model": str(model.source),
                             "ids": model.chat.encode([{"role": "user", "content": "Hi"}]), "max_new_tokens": 4},
                            wall_seconds=300)
    assert answer.verdict.ok, answer
    redraw = cached_graph_redraw_s()
    server, lab_worker = memory_mb(), memory_mb(worker.pid)
    worker.close()
    write_result("page-speed-smollm2", {
        "pages": pages, "head_finder_s": finder, "head_finder_median_s": statistics.median(finder),
        "first_token_of_a_chat_answer_s": first_token, "first_token_median_s": statistics.median(first_token),
        "analyses": analysed, "attribution_page_threshold_moved_s": redraw,
        "attribution_page_threshold_moved_median_s": statistics.median(redraw),
        "memory": {"server_with_the_model": server, "lab_worker_with_the_model": lab_worker,
                   "together_rss_mb": server["rss_mb"] + lab_worker["rss_mb"],
                   "together_pss_mb": server["pss_mb"] + lab_worker["pss_mb"]},
        "targets": {"first_draw_s": 3.0, "head_finder_s": 10.0, "first_token_s": 2.0, "memory_gb": 2.5,
                    "attribution_s": 2.0, "graph_s": 10.0, "analyses_memory_mb": 300},
        "targets_met": {
            "first_draw": all(p["median_s"] <= 3.0 for p in pages.values()),
            "head_finder": statistics.median(finder) <= 10.0, "first_token": statistics.median(first_token) <= 2.0,
            "memory": server["rss_mb"] + lab_worker["rss_mb"] <= 2500,
            "attribution": analysed["attribution_median_s"] <= 2.0, "graph": analysed["graph_median_s"] <= 10.0,
            "analyses_memory": analysed["memory_added_peak_mb"] <= 300}})


ATTENTION_HEAD_TEXT = ("The cat sat on the mat. The dog sat on the log. When the cat saw the dog, the cat ran to the "
                       "mat and the dog ran to the log. The cat sat on the")


if __name__ == "__main__":
    smollm2() if "--smollm2" in sys.argv else main()
