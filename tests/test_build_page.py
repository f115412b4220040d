"""The Build it page and the "use my code" switches, rendered with AppTest. The learner's code
runs in the real lab worker (a process of its own), as in the app."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from minitx.labs import LABS, get_lab
from ui.lab_files import LearnerFiles
from minitx.labs.checking import check
from tests.conftest import IN_CI
from tests.lab_sources import ALLOCATES_TOO_MUCH, LOOPS_FOREVER, RAISES, RIGHT, SYNTAX_ERROR, WRONG
from ui.models import RANDOM

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def labs_dir(tmp_path, monkeypatch):
    folder = tmp_path / "my_labs"
    monkeypatch.setenv("MINITX_LABS", str(folder))
    return folder


@pytest.fixture
def build(monkeypatch, tmp_path, imdb, labs_dir):
    """The app on the Build it page, with no trained run; the lab worker stopped afterwards."""
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(tmp_path / "no-runs"))
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("app_pages/build.py").run()
    yield at
    st.cache_resource.clear()          # on_release closes the worker


WRONG_ON_THE_PAGE = ("attention", "bpe_merge", "top_p", "causal_mask")


def submit(at: AppTest, name: str, source: str) -> AppTest:
    """What the editor sends when the learner presses Check (or Ctrl+Enter)."""
    if at.selectbox(key="build_lab").value != name:
        at.selectbox(key="build_lab").set_value(name).run()
    at.session_state[f"editor_{name}_0"] = {"id": f"{time.monotonic()}", "type": "submit", "text": source,
                                            "lang": "python", "selected": "", "cursor": ""}
    return at.run()


def errors(at):
    return [e.value for e in at.error]


def test_every_lab_on_the_page_stub_wrong_and_right(build, labs_dir):
    at = build
    assert not at.exception and "0 of 13 labs passed" in at.get("progress")[0].proto.text
    sandbox = " ".join(c.value for c in at.caption if "Sandbox:" in c.value)
    assert "**isolated**" in sandbox or "**limits only**" in sandbox and not IN_CI, sandbox   # CI installs bwrap
    for lab in LABS:
        submit(at, lab.name, lab.stub)
        assert any("not written yet" in e for e in errors(at)), (lab.name, errors(at))
        if lab.name in WRONG_ON_THE_PAGE:            # each kind of picture; every lab's messages: test_labs.py
            what, source, words = WRONG[lab.name][0]
            submit(at, lab.name, source)
            assert any(words in e for e in errors(at)), (lab.name, what, errors(at))
            assert not at.success
        submit(at, lab.name, RIGHT[lab.name])
        assert not at.exception and not errors(at), (lab.name, errors(at))
        assert at.success[0].value.startswith("Passed"), lab.name
        drawn = len(at.get("vega_lite_chart")) + len(at.table)
        assert drawn >= 2, (lab.name, drawn)                # the cases, and target / yours / difference
        assert (labs_dir / f"{lab.name}.py").read_text() == RIGHT[lab.name]
    progress = json.loads((labs_dir / "progress.json").read_text())
    assert all(progress[lab.name]["passed"] for lab in LABS)
    assert "13 of 13 labs passed" in at.get("progress")[0].proto.text


def test_runaway_and_broken_code_each_get_a_message_and_the_worker_carries_on(build, monkeypatch):
    at = build
    from minitx.sandbox.limits import Limits
    from ui.labs import lab_worker

    worker = lab_worker()
    worker.limits = Limits(cpu_seconds=1, wall_seconds=5)   # the worker is not started yet: it takes these
    assert worker.pid is None
    cases = [(SYNTAX_ERROR, "Syntax error on line 3, column 14"), (RAISES, "KeyError: 'no such key'"),
             (LOOPS_FOREVER, "more than 1 s of processor time"), (ALLOCATES_TOO_MUCH, "more memory than the 2 GiB it may have")]
    for template, says in cases:
        started = time.monotonic()
        submit(at, "attention", template.format(function="attention"))
        assert not at.exception
        assert any(says in e for e in errors(at)), (says, errors(at))
        assert time.monotonic() - started < 10
    pid = worker.pid
    submit(at, "attention", RAISES.format(function="attention"))
    assert any('line 3, in helper:  return value["no such key"]' in c.value for c in at.code)
    assert not any("minitx/" in c.value or "torch/" in c.value for c in at.code)
    submit(at, "attention", RIGHT["attention"])
    assert at.success and worker.pid == pid and worker.restarts == 0
    import streamlit as st

    st.cache_resource.clear()
    assert worker.pid is None and not Path(f"/proc/{pid}").exists()


def test_what_was_written_and_passed_is_there_after_a_restart(build, labs_dir):
    submit(build, "rope", WRONG["rope"][0][1])
    submit(build, "attention", RIGHT["attention"])
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    again = AppTest.from_file(APP, default_timeout=90).run()        # a new server and a new browser
    again.switch_page("app_pages/build.py").run()
    assert "1 of 13 labs passed" in again.get("progress")[0].proto.text
    marks = " ".join(c.value for c in again.caption)
    assert ":material/check_circle:] attention" in marks and ":material/cancel:] rope" in marks
    again.selectbox(key="build_lab").set_value("rope").run()
    assert any("RoPE ignored `start`" in i.value for i in again.info)
    assert LearnerFiles(labs_dir).source("rope") == WRONG["rope"][0][1]
    again.button(key="build_reset_rope").click().run()
    assert LearnerFiles(labs_dir).source("rope") == get_lab("rope").stub
    st.cache_resource.clear()


def test_a_browser_on_this_machine_is_told_from_one_on_another():
    from ui.access import is_local

    for local in (None, "127.0.0.1", "127.0.1.1", "::1", "::ffff:127.0.0.1"):
        assert is_local(local), local
    for remote in ("203.0.113.7", "192.168.1.20", "::ffff:203.0.113.7", "2001:db8::1", "fe80::1%eth0", "garbage"):
        assert not is_local(remote), remote


def test_a_browser_on_another_machine_may_not_run_code_unless_the_server_allows_it(build, monkeypatch):
    import ui.access

    monkeypatch.setattr(ui.access, "browser_address", lambda: "203.0.113.7")
    at = build.run()
    assert any("MINITX_LABS_ALLOW_REMOTE=1" in w.value and "203.0.113.7" in w.value for w in at.warning)
    assert "build_lab" not in [s.key for s in at.selectbox]
    monkeypatch.setenv("MINITX_LABS_ALLOW_REMOTE", "1")
    at.run()
    assert "build_lab" in [s.key for s in at.selectbox] and not at.warning


def _pass_every_lab(folder: Path) -> None:
    book = LearnerFiles(folder)
    for lab in LABS:
        book.record(lab.name, RIGHT[lab.name], check(lab, RIGHT[lab.name]))


# each concept page, and the labs whose "use my code" switch it has
PAGE_LABS = {"attention": ["attention", "repeat_kv"], "positional": ["sinusoidal", "rope"],
             "encoder": ["block", "rms_norm"], "decoder": ["top_p", "kv_step", "causal_mask", "moe_route"],
             "tokenization": ["bpe_merge"]}


def test_use_my_code_draws_each_concept_page_with_the_learner_s_functions(build, labs_dir):
    at = build
    at.session_state["drawn_model"] = RANDOM          # the decoder page's own model, not SmolLM2
    for page, names in PAGE_LABS.items():            # before they pass: a link to write each
        at.switch_page(f"app_pages/{page}.py").run()
        links = [link.proto.label for link in at.get("page_link")]
        for name in names:
            assert any(f"Write `{get_lab(name).function}` yourself" in label for label in links), (name, links)
    _pass_every_lab(labs_dir)
    at.selectbox(key="w_model_ffn").set_value("moe").run()     # the decoder page's experts need a mixture
    for page, names in PAGE_LABS.items():
        at.switch_page(f"app_pages/{page}.py").run()
        for name in names:
            at.toggle(key=f"use_mine_{name}").set_value(True)
        at.run()
        assert not at.exception and not errors(at), (page, errors(at))
        said = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
        metrics = {m.label: m.value for m in at.metric}
        for name in names:
            assert f"Drawn with **your** `{get_lab(name).function}`" in said, (page, name)
        if "largest |logit difference|" in metrics:
            assert float(metrics["largest |logit difference|"]) < 1e-4, page
        if page in ("positional", "decoder"):
            assert metrics.get("greedy text") == "the same", page
        if page == "tokenization":
            assert "the same as minitx's." in said


def test_train_with_my_attention_learns_like_minitx_s_attention(build, labs_dir, trained_runs, tmp_path):
    """A tiny run started from the page, every layer calling the learner's attention, reaches the
    accuracy of the same run with minitx's (seeds 0-4 of tiny range 0.754-0.804; the learner's
    attention gave the same accuracy as minitx's for each of those seeds)."""
    at = build
    assert any("Once your `attention` passes" in i.value for i in at.info)
    submit(at, "attention", RIGHT["attention"])
    at.radio(key="build_train_preset").set_value("Tiny (seconds)").run()
    at.button(key="build_train").click().run()
    assert not at.exception and not errors(at), errors(at)
    from ui.live import registry

    run_id = registry().active() or registry().run_ids()[0]
    snapshot = registry().wait(run_id, timeout=240)
    assert snapshot.status == "finished", snapshot.reason
    assert snapshot.learner_code == ("attention",) and snapshot.summary["learner_code"] == ["attention"]
    minitx_s = json.loads((trained_runs / "tiny" / "metrics.json").read_text())["test_accuracy"]
    assert abs(snapshot.summary["test_accuracy"] - minitx_s) <= 0.03, (snapshot.summary["test_accuracy"], minitx_s)
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[snapshot.name, "your code"] == "attention"
