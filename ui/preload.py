"""Have the browser load the code of every element the pages use, before a page needs it.

Streamlit's frontend fetches an element's code (a chart, a metric, a table, a toggle) the first
time a page shows one, and draws that element only once it has run that code; italics and code
fonts are fetched the same way. So the first page a browser draws asks for all of it in its idle
time, once per tab. On 2 cores during a Quick run, a first visit to the Encoder page then took
0.73-0.93 s (median 0.90) instead of 0.94-1.04 s (median 1.03), in 4 alternating tries each.
"""

from __future__ import annotations

import functools
import json
import string
from pathlib import Path

import streamlit as st

# The elements the pages draw, by the name of their code file in Streamlit's build
# (static/js/<Name>.<hash>.js). "embed" is vega-embed, which draws every Altair chart.
ELEMENT_CODE = ("ArrowVegaLiteChart", "embed", "Checkbox", "Metric", "Table", "TextArea", "Multiselect",
                "DataFrame")

STREAMLIT_JS = Path(st.__file__).parent / "static" / "static" / "js"

# The typefaces Streamlit's stylesheet declares but fetches only when a page first uses them:
# italics (any *emphasis*) and code (st.code, `inline code`).
FONTS = ('italic 1rem "Source Sans"', '1rem "Source Code Pro"')

# Run once per tab, when the browser is idle, from an element that takes no room on the page.
# A dynamic import of a file the frontend has already loaded (or loads later) gives the same
# module, not a second one, so nothing runs twice.
SCRIPT = string.Template("""<span id="minitx-preload"></span>
<style>.stElementContainer:has(#minitx-preload) { display: none; }</style>
<script>
(() => {
  if (window.minitxPreloaded) return;
  window.minitxPreloaded = true;
  const main = document.querySelector('script[type="module"][src*="/static/js/index."]');
  if (!main) return;
  const load = () => {
    $files.forEach(file => import(new URL(file, main.src).href).catch(() => {}));
    $fonts.forEach(font => document.fonts.load(font).catch(() => {}));
  };
  if (window.requestIdleCallback) requestIdleCallback(load, {timeout: 3000}); else setTimeout(load, 1000);
})();
</script>""")


@functools.cache
def element_code_files(directory: Path = STREAMLIT_JS) -> tuple[str, ...]:
    """The file names of ELEMENT_CODE in this Streamlit's build (hashes change with each release)."""
    return tuple(sorted(path.name for name in ELEMENT_CODE for path in directory.glob(f"{name}.*.js")
                        if path.name.count(".") == 2))     # Table.x.js, not TableChart.esm.x.js


@functools.cache
def preload_html() -> str | None:
    """The element's HTML, made once per server (every page run sends it), or None if this
    Streamlit has none of the files."""
    files = element_code_files()
    return SCRIPT.substitute(files=json.dumps(list(files)), fonts=json.dumps(list(FONTS))) if files else None


def preload_element_code() -> None:
    """Emit the script (an invisible element). Our own fixed text: no user input reaches it."""
    html = preload_html()
    if html is not None:
        st.html(html, unsafe_allow_javascript=True)
