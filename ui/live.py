"""The one run registry of this server, shared by every page, tab and reload, and Continue."""

from __future__ import annotations

import streamlit as st

from minitx.labs.training_run import LearnerCodeLauncher
from minitx.runs import RunRegistry
from ui.access import host_refusal
from ui.resources import checkpoints_dir

POLL_SECONDS = 1.0      # how often the live panel redraws while a run trains


# Clear cache drops the registry: it stops its run first, since one run must train at a time.
@st.cache_resource(on_release=RunRegistry.shutdown)
def registry() -> RunRegistry:
    """Runs with the learner's code (Build it) train confined; the others in a worker of their own."""
    return RunRegistry(checkpoints_dir(), launcher=LearnerCodeLauncher())


def current_run_id() -> str | None:
    """The run every tab shows: the one in progress, else the newest this server started."""
    reg = registry()
    ids = reg.run_ids()
    return reg.active() or (ids[0] if ids else None)


def _press_continue(name: str, epochs_key: str | None, then: str | None) -> None:
    """Continue's on_click: the saved run goes on where it stopped (with more epochs, if asked)."""
    epochs = st.session_state.get(epochs_key) if epochs_key else None
    st.session_state.pop("continue_error", None)
    refusal = host_refusal("continue a training run")
    if refusal:
        st.session_state["continue_error"] = f"Not continued: {refusal}"
        return
    try:
        registry().resume(name, int(epochs) if epochs else None)
    except ValueError as error:
        st.session_state["continue_error"] = f"Not continued: {error}"
        return
    if then:
        st.session_state["continue_then"] = then


def continue_button(name: str, status: str, epochs: int, key: str, then: str | None = None) -> None:
    """Continue a saved run where it stopped, a finished one for more epochs (the Training and Runs
    pages); `then` is the page to show the run on once it goes."""
    epochs_key = None
    if status == "finished":
        epochs_key = f"{key}_more_epochs_{name}"
        st.number_input("continue to epoch", epochs + 1, epochs + 20, value=epochs + 1, key=epochs_key,
                        help="The run goes on from its last step; its learning-rate schedule becomes that of a "
                             "run of this many epochs.")
    st.button("Continue" if status == "stopped" else "Continue training", key=f"{key}_continue_{name}",
              icon=":material/play_circle:", on_click=_press_continue, args=(name, epochs_key, then),
              disabled=registry().active() is not None,
              help="Goes on where the run stopped, as if it never had: the same batches, learning rate and "
                   "random numbers, so it ends with the weights an unstopped run would have.")
    if st.session_state.get("continue_error"):
        st.error(st.session_state["continue_error"])
    if st.session_state.pop("continue_then", None):
        st.switch_page(then)
