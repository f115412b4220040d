"""The app, rendered with streamlit.testing.v1.AppTest (no browser)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import skip_or_fail

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def app(monkeypatch, tmp_path, imdb):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(tmp_path / "no-runs"))
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    return AppTest.from_file(APP, default_timeout=60)


def test_home_renders_the_pipeline_for_the_sidebar_model(app):
    at = app.run()
    assert not at.exception
    assert "minitx" in at.title[0].value
    table = at.dataframe[0].value
    queries = table[table["stage"] == "queries"]["shape"].item()
    n_tokens = len(at.code[0].value.split())            # [CLS] + the sentence's tokens
    assert queries == f"[1, {n_tokens}, 4, 32]"        # quick preset: d_model 128, 4 heads
    at.select_slider(key="w_model_d_model").set_value(512).run()
    table = at.dataframe[0].value
    assert table[table["stage"] == "queries"]["shape"].item() == f"[1, {n_tokens}, 4, 128]"


def test_kv_head_choices_are_always_divisors_of_the_head_count(app):
    at = app.run()
    for d_model in (32, 512):
        at.select_slider(key="w_model_d_model").set_value(d_model).run()
        for heads in at.select_slider(key="w_model_n_heads").options:
            at.select_slider(key="w_model_n_heads").set_value(int(heads)).run()
            assert not at.exception
            choices = [int(g) for g in at.select_slider(key="w_model_n_kv_heads").options]
            assert choices == [g for g in range(1, int(heads) + 1) if int(heads) % g == 0]


def test_an_invalidated_choice_moves_to_a_valid_one(app):
    at = app.run()
    at.select_slider(key="w_model_d_model").set_value(512).run()
    at.select_slider(key="w_model_n_heads").set_value(16).run()
    at.select_slider(key="w_model_n_kv_heads").set_value(16).run()
    at.select_slider(key="w_model_n_heads").set_value(2).run()      # 16 KV heads no longer divide 2
    assert not at.exception
    assert at.session_state["model_config"].n_kv_heads in (1, 2)


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀🎬🍿" * 50, "这部电影很好看", "הסרט היה נהדר",
                                  "zero\u200bwidth\u200djoiners", "ctrl\x00\x07\x1bchars", "word " * 20_000])
def test_home_survives_odd_input(app, text):
    at = app.run()
    at.text_input[0].set_value(text).run()
    assert not at.exception
    if not text.strip():
        assert at.info, "empty text should get a message"


def test_attention_page_draws_one_heatmap_per_head_and_paths_agree(app):
    at = app.run()
    at.switch_page("app_pages/attention.py").run()
    assert not at.exception
    for heads, kv in ((4, 2), (8, 8), (8, 1), (2, 1), (16, 4)):
        at.select_slider(key="w_model_n_heads").set_value(heads).run()
        at.select_slider(key="w_model_n_kv_heads").set_value(kv).run()
        assert not at.exception
        assert len(at.get("vega_lite_chart")) == heads
        assert float(at.metric[0].value) < 1e-5
    for control, value in (("attention_causal", True), ("attention_pad", 0), ("attention_pad", 6),
                           ("attention_context", 32768)):
        widget = at.toggle(key=control) if control == "attention_causal" else (
            at.slider(key=control) if control == "attention_pad" else at.select_slider(key=control))
        widget.set_value(value).run()
        assert not at.exception
        assert float(at.metric[0].value) < 1e-5
    at.text_input(key="attention_text").set_value("   ").run()
    assert not at.exception and at.info


def _chips(at) -> int:
    return sum(m.value.count('class="chip"') for m in at.markdown)


def test_tokenization_page_shows_one_chip_per_token(app):
    from minitx.tokenizer import Tokenizer  # noqa: F401

    at = app.run()
    at.switch_page("app_pages/tokenization.py").run()
    assert not at.exception
    for kind in ("word", "char", "bpe"):
        at.selectbox(key="tok_kind").set_value(kind).run()
        at.text_area(key="tok_text").set_value("A truly great film").run()
        assert not at.exception
        chips = _chips(at)
        expected = {"word": 4, "char": len("a truly great film")}.get(kind)
        if expected:
            assert chips == expected, (kind, chips)
        else:
            assert 4 <= chips <= 18


@pytest.mark.parametrize("text", ["", "  \n ", "x" * 100_000, "😀🎬" * 20, "这部电影很好看",
                                  "הסרט היה נהדר", "a\u200bb\u200dc", "bad\x00\x07\x1b\x7fchars"])
def test_tokenization_page_handles_bad_input_with_a_message(app, text):
    at = app.run()
    at.switch_page("app_pages/tokenization.py").run()
    at.text_area(key="tok_text").set_value(text).run()
    assert not at.exception
    if not text.strip():
        assert at.info
    elif len(text) == 100_000:
        assert any("truncated" in c.value for c in at.caption)
    else:
        assert _chips(at) > 0


def test_tokenization_controls(app):
    at = app.run()
    at.switch_page("app_pages/tokenization.py").run()
    for vocab in (100, 30_000):
        at.select_slider(key="tok_vocab").set_value(vocab).run()
        assert not at.exception
    at.toggle(key="tok_lower").set_value(False).run()
    at.toggle(key="tok_compare").set_value(True).run()
    assert not at.exception
    assert at.get("vega_lite_chart")


def test_positional_page_shows_order_blindness(app):
    at = app.run()
    at.switch_page("app_pages/positional.py").run()
    assert not at.exception
    table = at.dataframe[1].value
    blind = float(table[table["positional encoding"] == "none"].iloc[0, 1])
    seeing = float(table[table["positional encoding"] != "none"].iloc[0, 1])
    assert blind < 1e-5 < seeing
    for key, value in (("pe_positions", 8), ("pe_positions", 128)):
        at.slider(key=key).set_value(value).run()
        assert not at.exception
    at.multiselect(key="pe_dims").set_value([]).run()
    at.text_input(key="pe_b").set_value("dog dog man").run()
    assert not at.exception and at.info
    for pe in ("rope", "learned", "none"):
        at.selectbox(key="w_model_pos_encoding").set_value(pe).run()
        assert not at.exception
