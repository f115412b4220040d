"""The one run registry of this server, shared by every page, tab and reload."""

from __future__ import annotations

import math
import os

import streamlit as st

from minitx.checkpoint import describe_runs, load_run, run_folders
from minitx.runs import (MAX_POLL_SECONDS, MAX_WORKER_NICENESS, MIN_POLL_SECONDS, POLL_SECONDS,
                         WORKER_NICENESS, RunRegistry)
from ui.resources import checkpoints_dir


# A registry dropped from the cache (Clear cache) stops its run and its spare worker: the next
# one would not see them, and one run must train at a time.
@st.cache_resource(on_release=RunRegistry.shutdown)
def registry() -> RunRegistry:
    """Created once per server. MINITX_RUN_WORKER=thread trains in a thread (for comparison);
    MINITX_WORKER_NICENESS (0 to MAX_WORKER_NICENESS, default WORKER_NICENESS) sets how far
    below the server a worker process runs."""
    return RunRegistry(checkpoints_dir(), worker=os.environ.get("MINITX_RUN_WORKER", "process"),
                       niceness=worker_niceness(os.environ.get("MINITX_WORKER_NICENESS")))


def worker_niceness(text: str | None) -> int:
    """MINITX_WORKER_NICENESS as a number (the registry checks its range), or the default."""
    if text is None or not text.strip():
        return WORKER_NICENESS
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"MINITX_WORKER_NICENESS must be a whole number from 0 to "
                         f"{MAX_WORKER_NICENESS}, not {text!r}.") from None


def poll_seconds(text: str | None) -> float:
    """MINITX_POLL_SECONDS as seconds between two redraws of the live panel, or the default."""
    if text is None or not text.strip():
        return POLL_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not MIN_POLL_SECONDS <= seconds <= MAX_POLL_SECONDS:     # NaN fails this too
        raise ValueError(f"MINITX_POLL_SECONDS must be a number of seconds from {MIN_POLL_SECONDS:g} to "
                         f"{MAX_POLL_SECONDS:g}, not {text!r}.")
    return seconds


# Set by the live panel just before it reruns the page itself (an evaluation arrived, the run ended).
PANEL_RERUN = "live_panel_rerun"


def give_way_while_this_page_is_drawn() -> None:
    """Before a full page run: the run in progress (if any) pauses for a moment, so the page the
    learner asked for is drawn on every core (the server's script, then the browser's render).

    Not for the live panel's own reruns: nobody is waiting on those, and in a Quick run they
    come with each evaluation. Its once-a-second redraws are fragment runs and never get here.
    """
    if st.session_state.pop(PANEL_RERUN, False):
        return
    try:
        runs = registry()
    except ValueError:      # a bad MINITX_WORKER_NICENESS: the Training page says so, no other page
        return
    runs.give_way()


def current_run_id() -> str | None:
    """The run every tab shows: the one in progress, else the newest this server started."""
    reg = registry()
    ids = reg.run_ids()
    return reg.active() or (ids[0] if ids else None)


def saved_runs():
    """describe_runs of checkpoints/, read again only when a run folder or a file in one changes.

    A Quick run's metrics.json is about 2.4 MB (every step, the attention snapshots): parsing
    every run's on every rerun of the Runs page would cost tens of ms per run.
    """
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
