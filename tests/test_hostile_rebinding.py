"""Hostile: a page on another site reaches this server through a name of its own that resolves to
127.0.0.1 (DNS rebinding). Its requests carry that name in the Host header; the pages that run code
or start training refuse them. The same in a real browser: tests/test_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
REBIND = "rebind.example:8501"


def test_only_this_machine_s_names_are_allowed_unless_the_user_adds_one(monkeypatch):
    from ui.access import host_allowed, host_name

    assert host_name("LOCALHOST:8501") == "localhost" and host_name("[::1]:8501") == "[::1]"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("::1") == "::1"
    for host in (None, "localhost:8501", "127.0.0.1:8501", "[::1]:8501", "localhost"):
        assert host_allowed(host), host
    for host in (REBIND, "localhost.rebind.example:8501", "127.0.0.1.nip.io:8501", "0.0.0.0:8501", ""):
        assert not host_allowed(host), host
    monkeypatch.setenv("MINITX_ALLOWED_HOSTS", "rebind.example, box.lan")
    assert host_allowed(REBIND) and host_allowed("box.lan") and not host_allowed("other.example:8501")


@pytest.fixture
def rebound(monkeypatch, tmp_path, imdb):
    """The app as a rebinding page sees it: a local peer, the Host header of another name."""
    import streamlit as st

    import ui.access

    monkeypatch.setenv("MINITX_CHECKPOINTS", str(tmp_path / "no-runs"))
    monkeypatch.setenv("MINITX_LABS", str(tmp_path / "my_labs"))
    monkeypatch.setattr(ui.access, "request_host", lambda: REBIND)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield AppTest.from_file(APP, default_timeout=60)
    st.cache_resource.clear()


def test_build_it_shows_no_editor_to_a_rebinding_name(rebound, tmp_path):
    at = rebound.run()
    at.switch_page("app_pages/build.py").run()
    assert any("DNS rebinding" in w.value and "rebind.example" in w.value for w in at.warning)
    assert "build_lab" not in [s.key for s in at.selectbox]
    assert not (tmp_path / "my_labs").exists()                   # nothing was saved or run


def test_training_does_not_start_for_a_rebinding_name_and_does_for_an_allowed_one(rebound, monkeypatch):
    at = rebound.run()
    at.switch_page("app_pages/training.py").run()
    at.button(key="train_start").click().run()
    from ui.live import registry

    assert not registry().run_ids()
    assert any("Not started" in e.value and "DNS rebinding" in e.value for e in at.error), [e.value for e in at.error]

    monkeypatch.setenv("MINITX_ALLOWED_HOSTS", "rebind.example")
    at.button(key="train_start").click().run()
    assert not any("DNS rebinding" in e.value for e in at.error)
    ids = registry().run_ids()
    assert len(ids) == 1
    registry().stop(ids[0])
    registry().shutdown()
