"""The one run registry of this server, shared by every page, tab and reload, and the saved runs."""

from __future__ import annotations

import streamlit as st

from minitx.checkpoint import describe_runs, load_run, run_folders
from minitx.runs import RunRegistry
from ui.resources import checkpoints_dir

POLL_SECONDS = 1.0      # how often the live panel redraws while a run trains


# Clear cache drops the registry: it stops its run first, since one run must train at a time.
@st.cache_resource(on_release=RunRegistry.shutdown)
def registry() -> RunRegistry:
    return RunRegistry(checkpoints_dir())


def current_run_id() -> str | None:
    """The run every tab shows: the one in progress, else the newest this server started."""
    reg = registry()
    ids = reg.run_ids()
    return reg.active() or (ids[0] if ids else None)


def saved_runs():
    """describe_runs of checkpoints/, read again only when a run folder or a file in one changes
    (a run's metrics.json holds its whole history: megabytes to parse on every rerun)."""
    directory = checkpoints_dir()
    signature = tuple((path.name, tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.iterdir())))
                      for path in run_folders(directory))
    return _described(str(directory), signature)


@st.cache_resource(show_spinner=False, max_entries=4)
def _described(directory: str, signature: tuple):
    return describe_runs(directory)


@st.cache_resource(show_spinner="Loading the run...", max_entries=4)
def loaded_run(path: str, modified: float):
    """A saved run's model and tokenizer, cached until its folder changes."""
    return load_run(path)
