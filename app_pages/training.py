"""Page 6: training (until the live training page lands, the command line does it)."""

import streamlit as st

from minitx.presets import PRESETS
from ui.model_sidebar import model_sidebar
from ui.resources import newest_run

model_sidebar()
st.title("Training")
st.info("Live training from the browser is on its way. Until then, train from a terminal; the "
        "concept pages pick up the newest run in checkpoints/ automatically.")
st.code("python -m minitx.train --preset quick        # about 80 s on 2 CPU cores, ~0.86 accuracy\n"
        "python -m minitx.train --preset full         # about 4 minutes, ~0.88 on the full test split",
        language="bash")
run, why_not = newest_run()
if run is not None:
    st.success(f"Newest run: {run.path.name}, test accuracy {run.metrics.get('test_accuracy') or 0:.4f}.")
else:
    st.caption(why_not)
st.caption(f"Presets: {', '.join(PRESETS)}.")
