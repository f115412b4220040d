"""The app, rendered with streamlit.testing.v1.AppTest (no browser)."""

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import ui.pages
from ui import charts
from ui.models import RANDOM


APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def _unescaped(value):
    return re.sub(r"\\(.)", r"\1", value) if isinstance(value, str) else value


def shown(table):
    """An st.table's frame as the learner reads it: static_table's Markdown escapes undone."""
    return table.value.rename(columns=_unescaped).map(_unescaped)


def test_static_tables_escape_markdown_and_only_that():
    from ui.common import literal_markdown

    punctuation = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
    assert literal_markdown(punctuation) == "".join("\\" + c for c in punctuation)
    for text in ("+ rope positions", "[1, 7, 4, 32]", "a*b_c", "m − n", "q_m · k_n", "<br />"):
        assert _unescaped(literal_markdown(text)) == text
    assert literal_markdown("d_model 128 · m − n") == "d\\_model 128 · m − n"   # letters, digits, non-ASCII kept


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
    # drawn as Markdown, so escaped: unescaped, "+ sinusoidal positions" would be a bulleted list
    assert "\\+ sinusoidal positions" in at.table[0].value["stage"].tolist()
    table = shown(at.table[0])
    queries = table[table["stage"] == "queries"]["shape"].item()
    n_tokens = len(at.code[0].value.split())            # [CLS] + the sentence's tokens
    assert queries == f"[1, {n_tokens}, 4, 32]"        # quick preset: d_model 128, 4 heads
    at.select_slider(key="w_model_d_model").set_value(512).run()
    table = shown(at.table[0])
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


# Odd input, each tried in turn on one page (one app start for all of them).
ODD_TEXTS = ["", "   \n\t ", "😀🎬🍿" * 50, "这部电影很好看", "הסרט היה נהדר", "zero\u200bwidth\u200djoiners",
             "ctrl\x00\x07\x1bchars"]


def test_home_survives_odd_input(app):
    at = app.run()
    for text in ODD_TEXTS + ["word " * 20_000]:
        at.text_input[0].set_value(text).run()
        assert not at.exception, (text[:20], at.exception)
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
    at = app.run()
    at.switch_page("app_pages/tokenization.py").run()
    assert not at.exception
    for kind in ("word", "char", "bpe", "bytebpe"):
        at.selectbox(key="tok_kind").set_value(kind).run()
        at.text_area(key="tok_text").set_value("A truly great film").run()
        assert not at.exception
        chips = _chips(at)
        expected = {"word": 4, "char": len("a truly great film")}.get(kind)
        if expected:
            assert chips == expected, (kind, chips)
        else:
            assert 4 <= chips <= 18
    # a byte-level vocabulary holds every byte first: asked for 100 pieces, it gets them all
    at.select_slider(key="tok_vocab").set_value(100).run()
    assert not at.exception
    assert any("Ġ is a space" in c.value for c in at.caption)
    assert any("asked: 100" in c.value and "reached: 261" in c.value for c in at.caption), [c.value for c in at.caption]


def test_tokenization_page_handles_bad_input_with_a_message(app):
    at = app.run()
    at.switch_page("app_pages/tokenization.py").run()
    for text in ODD_TEXTS + ["x" * 100_000, "bad\x00\x07\x1b\x7fchars"]:
        at.text_area(key="tok_text").set_value(text).run()
        assert not at.exception, (text[:20], at.exception)
        if not text.strip():
            assert at.info, repr(text)
        elif len(text) == 100_000:
            assert any("truncated" in c.value for c in at.caption)
        else:
            assert _chips(at) > 0, repr(text)


def test_positional_page_shows_order_blindness(app):
    at = app.run()
    at.switch_page("app_pages/positional.py").run()
    assert not at.exception
    table = shown(at.table[1])
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


PAGES = [file for file, _, _ in ui.pages.PAGES]


@pytest.fixture
def trained_checkpoints(trained_runs):
    """conftest's session runs: "tiny" (a classifier) and "lm-tiny" (a language model)."""
    return trained_runs


def _page_widgets(at):
    """Widgets in the page body (not the sidebar), as (kind, key) pairs."""
    found = []
    for kind in ("slider", "select_slider", "selectbox", "toggle", "multiselect"):
        for widget in getattr(at.main, kind):
            if widget.key and not widget.key.startswith("w_model_") and not widget.disabled:
                found.append((kind, widget.key))
    return found


def _values(widget, kind):
    if kind == "toggle":
        return [not widget.value]
    if kind == "slider":
        return [widget.min, widget.max]
    if kind in ("select_slider", "selectbox"):
        return [widget.options[0], widget.options[-1]]
    if kind == "multiselect":
        return [[], widget.options[:1]]
    return []


def _cast(kind, widget, value):
    if kind in ("select_slider",) and all(str(o).lstrip("-").isdigit() for o in widget.options):
        return int(value)
    return value


# the pages that show a trained run's weights or tokenizer, so are also swept with the session's runs
SHOW_TRAINED_RUNS = ("app_pages/home.py", "app_pages/embeddings.py", "app_pages/encoder.py",
                     "app_pages/decoder.py", "app_pages/attribution.py", "app_pages/runs.py")


@pytest.mark.parametrize("page, with_run", [(page, False) for page in PAGES] + [(page, True) for page in SHOW_TRAINED_RUNS],
                         ids=lambda value: {False: "random-init", True: "trained-run"}.get(value, value))
def test_every_page_renders_and_survives_every_control(page, with_run, app, monkeypatch, request):
    if with_run:
        monkeypatch.setenv("MINITX_CHECKPOINTS", str(request.getfixturevalue("trained_checkpoints")))
    else:       # random weights, as the test's name says: SmolLM2's pages are tests/test_pretrained_pages.py's
        app.session_state["drawn_model"] = RANDOM
    at = app.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    if page.endswith("embeddings.py"):
        notes = " ".join(e.value for e in list(at.success) + list(at.info))
        assert ("trained run **tiny**" in notes) == with_run, notes
    if page.endswith("training.py"):     # the estimate's timed steps are tested elsewhere: not re-timed here
        monkeypatch.setattr("minitx.estimate.time_training_step", lambda *args, **kwargs: 0.1)
    def current(kind, key):
        """The widget as the page drew it last, or None if an earlier control took it away (a task, a run)."""
        widget = next((w for w in getattr(at.main, kind) if w.key == key), None)
        return None if widget is None or widget.disabled else widget

    for kind, key in _page_widgets(at):
        for value in _values(current(kind, key), kind) if current(kind, key) else []:
            widget = current(kind, key)
            if widget is None:
                break
            widget.set_value(_cast(kind, widget, value)).run()
            assert not at.exception, (page, key, value, at.exception)
    if with_run or page.endswith(("tokenization.py", "runs.py", "build.py", "quantization.py")):
        return          # a trained run brings its own architecture; these pages hardly read the sidebar
    # the sidebar's extremes on this page, ending at the smallest head (d_model 32, 16 heads: 2
    # dimensions each, the edge for RoPE) with one KV head and 6 layers, where every option is
    # tried: the smallest model keeps the Training page's timed estimate cheap
    for key, value in (("w_model_d_model", 512), ("w_model_n_heads", 1), ("w_model_n_heads", 16),
                       ("w_model_n_kv_heads", 1), ("w_model_d_model", 32)):
        at.select_slider(key=key).set_value(value).run()
        assert not at.exception, (page, key, value, at.exception)
    at.slider(key="w_model_n_layers").set_value(6).run()
    assert "head size 2." in at.sidebar.caption[-1].value, at.sidebar.caption[-1].value
    # every option of every sidebar choice, several choices changed in one rerun
    boxes = ("w_model_pos_encoding", "w_model_norm", "w_model_norm_position", "w_model_ffn", "w_model_pooling")
    for turn in range(max(len(at.selectbox(key=key).options) for key in boxes)):
        chosen = {}
        for key in boxes:
            options = at.selectbox(key=key).options
            chosen[key] = options[turn % len(options)]
            at.selectbox(key=key).set_value(chosen[key])
        at.run()
        assert not at.exception, (page, chosen, at.exception)
        assert all(at.selectbox(key=key).value == value for key, value in chosen.items()), (page, chosen)


def test_sidebar_values_survive_a_page_switch(app):
    at = app.run()
    at.select_slider(key="w_model_n_heads").set_value(8).run()
    at.selectbox(key="w_model_pos_encoding").set_value("rope").run()
    at.switch_page("app_pages/attention.py").run()
    assert at.select_slider(key="w_model_n_heads").value == 8
    assert at.selectbox(key="w_model_pos_encoding").value == "rope"
    assert len(at.get("vega_lite_chart")) == 8


# -- training, runs and predict -------------------------------------------------------------

def _heading(at) -> str:
    return " ".join(m.value for m in at.markdown if m.value.startswith("####"))


def _train_until_done(at, timeout: float = 180.0) -> list[float]:
    """AppTest does not fire run_every: rerun the page by hand, as the fragment would."""
    import time

    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
        seen += [p.value / 100 for p in at.get("progress")]   # AppTest gives percent
        if any(word in _heading(at) for word in ("finished", "stopped", "failed")):
            return seen
    raise AssertionError(f"the run did not end in {timeout} s: {_heading(at)}")


def _start(at, preset="Tiny (smoke test)", name="apptest-run", **numbers):
    at.switch_page("app_pages/training.py").run()
    at.selectbox(key="w_train_preset").set_value(preset).run()
    for key, value in numbers.items():
        at.number_input(key=f"w_train_{key}").set_value(value).run()
    at.text_input(key="w_train_run_name").set_value(name).run()
    assert not at.exception, at.exception
    at.button(key="train_start").click().run()
    return at


def test_a_tiny_run_from_the_page_finishes_is_listed_and_predicts(app):
    at = app.run()
    at.switch_page("app_pages/training.py").run()
    at.selectbox(key="w_train_preset").set_value("Tiny (smoke test)").run()
    assert at.session_state["model_d_model"] == 32 and at.session_state["train_train_size"] == 2000
    assert any("Estimated time: about" in m.value for m in at.markdown)
    _start(at, train_size=1_000)                      # half the preset's reviews: 0.69, not 0.77
    progress = _train_until_done(at)
    assert "finished" in _heading(at), _heading(at)
    assert any(0 < p < 1 for p in progress) and progress[-1] == 1.0, progress[-8:]   # moved, then completed
    specs = json.dumps([json.loads(c.proto.spec) for c in at.get("vega_lite_chart")])
    titles = set(re.findall(r'"(?:title|text)": "([^"]+)"', specs))
    assert {"Training loss (per step, and smoothed)", "learning rate", "Evaluation accuracy",
            "Evaluation loss", "Confusion matrix (test)"} <= titles, titles
    accuracy = float(at.metric[0].value)
    assert at.metric[0].label == "test accuracy" and accuracy > 0.6
    assert any("confidently wrong" in m.value for m in at.markdown)

    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    row = table[table["run"] == "apptest-run"].iloc[0]
    assert row["status"] == "finished" and row["test accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert row["heads / KV"] == "2 / 1" and row["tokenizer"].startswith("word")
    at.text_area(key="predict_text").set_value("A wonderful, moving film. I loved every minute.").run()
    assert not at.exception, at.exception
    p_positive = next(m for m in at.metric if m.label == "P(positive)").value
    assert 0.0 <= float(p_positive.rstrip("%")) <= 100.0
    assert any("integrated gradients" in c.value for c in at.caption)
    steps = at.select_slider(key="snap_step").options
    assert steps[0] == "0" and len(steps) > 3               # from random to trained
    at.select_slider(key="snap_step").set_value(0).run()
    assert not at.exception


def test_start_trains_the_knobs_as_pressed_and_a_second_start_while_busy_names_the_run(app):
    """A preset chosen and Start pressed before the page had redrawn (one rerun, as a quick
    click lands in the browser): the run must be the new preset, not the form drawn before.
    While it trains, every other start is refused with its name."""
    at = app.run()
    at.switch_page("app_pages/training.py").run()              # the Quick form
    at.selectbox(key="w_train_preset").set_value("Language model, tiny (smoke test)")
    at.text_input(key="w_train_run_name").set_value("long-run")
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    from minitx.presets import PRESETS
    from ui.live import registry

    snap = registry().snapshot(registry().run_ids()[0])
    assert snap.name == "long-run" and snap.model_config.is_lm and snap.model_config.d_model == 32   # not Quick
    assert "long-run" in _heading(at)
    assert not [b for b in at.button if b.key == "train_start"]     # no Start while a run trains
    assert any("One run trains at a time" in c.value for c in at.caption)
    with pytest.raises(ValueError, match="long-run.*only one run trains at a time"):
        registry().start(*PRESETS["tiny"])
    at.session_state["train_start_pressed"] = True     # Start in a tab drawn before this run began
    at.run()
    assert any("Not started: run long-run" in e.value for e in at.error), [e.value for e in at.error]
    _train_until_step(at, 3)
    at.button(key="train_stop").click().run()
    _train_until_done(at)
    assert "stopped" in _heading(at)
    run_id = registry().run_ids()[0]
    stopped_at = registry().snapshot(run_id).step
    assert stopped_at >= 3

    # Continue: the same run goes on from its step, and its charts go on from there, not from 0
    at.button(key="train_continue_long-run").click().run()
    assert not at.exception, at.exception
    again = registry().snapshot(registry().run_ids()[0])
    assert again.run_id != run_id and again.name == "long-run" and again.status in ("queued", "running")
    assert [e["step"] for e in again.steps] == list(range(1, stopped_at + 1))
    _train_until_done(at)
    done = registry().snapshot(again.run_id)
    assert done.status == "finished", done.reason
    assert [e["step"] for e in done.steps] == list(range(1, done.total_steps + 1))
    assert "long-run" in _heading(at) and "finished" in _heading(at)


def _train_until_step(at, step: int, timeout: float = 120.0) -> None:
    import time

    from ui.live import registry

    deadline = time.monotonic() + timeout
    while registry().snapshot(registry().run_ids()[0]).step < step:
        assert time.monotonic() < deadline, "the run took no steps"
        time.sleep(0.3)
    at.run()


def test_a_run_in_another_server_is_named_and_start_is_refused(app):
    from minitx.training_lock import TrainingLock, default_lock_path
    from ui.live import registry

    other_server = TrainingLock(default_lock_path())      # conftest: this test's own lock file
    other_server.acquire({"run": "elsewhere-run", "pid": 4242, "checkpoints": "/srv/other"})
    try:
        at = _start(app.run(), name="refused-run")
        assert registry().run_ids() == [] and not at.exception
        assert any(e.value.startswith("Not started: run elsewhere-run is training on this machine "
                                      "(minitx process 4242") for e in at.error), [e.value for e in at.error]
        assert not at.warning                # the error says it; the warning would say it twice
        at.session_state["train_error"] = None
        at.run()
        assert any(w.value.startswith("Run elsewhere-run is training on this machine") for w in at.warning)
        assert any("timed just now on this machine while another run trains on it (so too long) at"
                   in m.value for m in at.markdown)
    finally:
        other_server.release()
    at.run()
    assert not at.warning
    assert any("timed just now on this machine at" in m.value for m in at.markdown)   # timed again


def test_a_worker_process_started_from_the_app_does_not_run_the_app():
    """multiprocessing's spawn runs the file of sys.modules["__main__"] again in every child, as
    __mp_main__; during a `streamlit run` script run that is streamlit_app.py, which used to draw
    Home there in bare mode, with a run registry of its own. The child here reports what it has."""
    script = textwrap.dedent(f"""
        import multiprocessing, sys, types
        fake = types.ModuleType("__main__")
        fake.__file__ = {APP!r}                  # what `streamlit run` installs while a page runs
        sys.modules["__main__"] = fake
        report = "import sys; print(sorted(m for m in ('streamlit', 'ui.live') if m in sys.modules))"
        child = multiprocessing.get_context("spawn").Process(target=exec, args=(report,))
        child.start()
        child.join()
        sys.exit(child.exitcode)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(APP).parent)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr[-3000:])


def test_a_run_whose_loss_becomes_nan_ends_as_failed_with_the_reason_on_the_page(app):
    """The NaN is forced (a learner's attention that turns NaN), not hoped for from a high
    learning rate, which diverges or not with the processor's rounding."""
    from minitx.presets import PRESETS
    from tests.lab_sources import NAN_FROM_THE_THIRD_CALL
    from ui.live import registry

    at = app.run()
    model_cfg, train_cfg = PRESETS["tiny"]
    registry().start(model_cfg, train_cfg.replace(train_size=400, test_size=200), "too-hot",
                     learner_code={"attention": NAN_FROM_THE_THIRD_CALL})
    at.switch_page("app_pages/training.py").run()
    _train_until_done(at)
    assert "failed" in _heading(at)
    assert any("loss became nan" in e.value for e in at.error), [e.value for e in at.error]


def test_the_training_page_says_which_precision_and_processor_a_run_will_use(app):
    from minitx.hardware import cpu_name

    at = app.run()
    at.switch_page("app_pages/training.py").run()
    line = next(c.value for c in at.caption if c.value.startswith("Trains on"))
    assert line.startswith(f"Trains on the CPU ({cpu_name()}) in fp32; bf16 units: ")
    at.selectbox(key="w_train_precision").set_value("bf16").run()
    assert any(c.value.startswith("Trains on the CPU") and " in bf16;" in c.value for c in at.caption)


def test_a_hostile_run_name_is_refused_on_the_page(app):
    at = _start(app.run(), name="../escape")
    for name in ("../escape", "/etc/x", "a b"):
        at.text_input(key="w_train_run_name").set_value(name).run()
        at.button(key="train_start").click().run()
        assert any("not allowed" in e.value for e in at.error), (name, [e.value for e in at.error])
    from ui.live import registry

    assert registry().run_ids() == []


def _break_runs(good: Path, folder: Path) -> dict[str, str]:
    """Four copies of a good run, each damaged as a learner's disk or hands might: the reason each
    must be listed with. They are made newer than the good run, so a careless default picks one."""
    import json
    import os
    import shutil

    import torch

    damage = {}
    for name in ("truncated", "pickled", "wrong-shape", "bad-config"):
        shutil.copytree(good, folder / name)
    weights = (folder / "truncated" / "model.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    damage["truncated"] = "unreadable (truncated or corrupted?)"
    torch.save({"anything": torch.zeros(3)}, folder / "pickled" / "model.safetensors")
    damage["pickled"] = "unreadable (truncated or corrupted?)"
    config = json.loads((folder / "wrong-shape" / "config.json").read_text())
    config["model"]["d_model"] = 64                          # the tensors are 32 wide
    (folder / "wrong-shape" / "config.json").write_text(json.dumps(config))
    damage["wrong-shape"] = "has shape"
    (folder / "bad-config" / "config.json").write_text("{truncated")
    damage["bad-config"] = "config.json"
    for n, name in enumerate(damage, start=1):
        os.utime(folder / name, (time.time() + n, time.time() + n))
    return damage


def test_runs_page_lists_broken_runs_as_unreadable_never_by_default_and_manages_runs(
        app, monkeypatch, tmp_path, trained_checkpoints):
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(trained_checkpoints / "tiny", folder / "tiny")
    damage = _break_runs(trained_checkpoints / "tiny", folder)
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(folder))
    at = app.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("run")
    for name, reason in damage.items():
        assert table.loc[name, "status"] == "unreadable" and reason in table.loc[name, "model"], name
    assert table.loc["tiny", "status"] == "finished"
    assert any("4 run folder(s) cannot be read" in w.value for w in at.warning)
    # every default is the good run, though the broken ones are newer
    assert at.multiselect(key="runs_overlay").value == ["tiny"]
    assert at.selectbox(key="runs_manage").value == "tiny"
    assert at.selectbox(key="predict_run").value == "tiny" and at.selectbox(key="predict_run").options == ["tiny"]
    # a review the model knows none of the words of gets a probability, and a warning with it
    at.text_area(key="predict_text").set_value("😀🎬🍿 🤩🤩").run()
    assert any("knows none of these words" in w.value for w in at.warning)
    at.text_area(key="predict_text").set_value("A wonderful film, I loved it.").run()
    assert not any("knows none of these words" in w.value for w in at.warning)

    at.selectbox(key="runs_manage").set_value("tiny").run()
    at.text_input(key="runs_new_name").set_value("../outside").run()
    at.button(key="runs_rename").click().run()
    assert any("not allowed" in e.value for e in at.error) and (folder / "tiny").is_dir()
    at.text_input(key="runs_new_name").set_value("tiny-renamed").run()
    at.button(key="runs_rename").click().run()
    assert (folder / "tiny-renamed").is_dir() and not (folder / "tiny").exists()

    at.selectbox(key="runs_manage").set_value("bad-config").run()
    at.button(key="runs_delete").click().run()
    assert (folder / "bad-config").is_dir()                 # nothing goes before the confirmation
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="runs_delete_yes").click().run()
    assert not (folder / "bad-config").exists() and (folder / "tiny-renamed").is_dir()
    assert not at.exception


def test_runs_page_saves_the_compared_curves_as_svg(app, monkeypatch, trained_checkpoints):
    """Streamlit's chart toolbar saves PNG only: each comparison chart gets an SVG button, and
    the SVG is that chart, drawn by Altair's own export at a fixed width."""
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    buttons = {b.key: b.proto.label for b in at.get("download_button")}
    assert buttons.get("runs_overlay_loss_svg") == buttons.get("runs_overlay_acc_svg") == "Download as SVG", buttons

    import pandas as pd

    from ui import charts

    frame = pd.DataFrame({"run": ["mha", "mha", "mqa", "mqa"], "epoch": [1, 2, 1, 2],
                          "val_accuracy": [0.71, 0.80, 0.69, 0.78]})
    svg = charts.svg(charts.overlay(frame, "val_accuracy", "Validation accuracy", "accuracy"), width=400)
    assert svg.startswith(b"<svg") and svg.rstrip().endswith(b"</svg>")
    text = svg.decode()
    assert "Validation accuracy" in text and "mha" in text and "mqa" in text
    assert float(re.search(r'<svg[^>]* width="([0-9.]+)"', text).group(1)) > 400   # plot area + axes


def test_a_run_stopped_after_one_evaluation_gets_short_axis_labels():
    """One evaluation is one point: Vega labels a one-value axis 0.667200 unless told a format."""
    import pandas as pd

    from ui import charts

    frame = pd.DataFrame({"run": ["stopped-early"], "epoch": [0.2841], "val_accuracy": [0.6672]})
    text = charts.svg(charts.overlay(frame, "val_accuracy", "Validation accuracy", "accuracy")).decode()
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", text)
    assert "0.667" in labels and "0.28" in labels, labels
    assert not any(re.fullmatch(r"0\.\d{4,}", label) for label in labels), labels


def test_predict_survives_odd_input(app, monkeypatch, trained_checkpoints):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/runs.py").run()
    for text in ODD_TEXTS + ["great " * 3_000]:
        at.text_area(key="predict_text").set_value(text).run()
        assert not at.exception, (text[:20], at.exception)
        said = [m.label for m in at.metric] + [w.value for w in at.warning] + [c.value for c in at.caption]
        if text.strip():
            assert "P(positive)" in said or any("no tokens" in str(x) for x in said), (text[:20], said)


def test_pages_say_when_they_show_only_the_first_tokens(app):
    at = app.run()
    for page, key in (("app_pages/embeddings.py", "emb_text"), ("app_pages/encoder.py", "enc_text")):
        at.switch_page(page).run()
        widget = next((t for t in at.text_input if t.key == key), at.text_input[0])
        widget.set_value("a truly great film " * 20).run()
        assert any("Showing the first" in c.value for c in at.caption), page


# -- the decoder ----------------------------------------------------------------------------------

def _notes(at) -> str:
    return " ".join(e.value for e in list(at.info) + list(at.caption) + list(at.warning))


def test_decoder_page_with_random_weights_says_so_and_how_to_train_one(app):
    at = app.run()
    at.session_state["drawn_model"] = RANDOM          # not SmolLM2, the first choice here
    at.switch_page("app_pages/decoder.py").run()
    assert not at.exception, at.exception
    assert "Random weights" in _notes(at) and "--preset lm-quick" in _notes(at)
    assert any("generated-text" in m.value for m in at.markdown)
    earlier = next(m for m in at.metric if m.label.startswith("largest change of an output at positions"))
    later = next(m for m in at.metric if m.label.startswith("largest change after position"))
    assert float(earlier.value) == 0.0 and float(later.value) > 0.0
    table = next(shown(t) for t in at.table if "cache bytes (measured)" in shown(t).columns)
    assert list(table["attention"]) == ["MHA", "GQA", "MQA"]
    assert (table["cache bytes (measured)"] == table["cache bytes (formula)"]).all()
    sizes = list(table["cache bytes (measured)"])
    assert sizes[0] / sizes[2] == 4 and sizes[1] / sizes[2] == 2           # H : G : 1 (Quick: 4 heads)
    at.button(key="dec_time_kinds").click().run()
    timed = next(shown(t) for t in at.table if "speed-up" in shown(t).columns)
    assert list(timed["attention"]) == ["MHA", "GQA", "MQA"] and (timed["speed-up"].astype(float) > 0).all()
    heads = at.select_slider(key="w_model_n_heads").value        # one heatmap per head of the layer
    assert len([c for c in at.get("vega_lite_chart")]) >= int(heads)


def test_decoder_page_answers_odd_prompts_with_a_message(app, monkeypatch, trained_checkpoints):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/decoder.py").run()
    assert "Run lm-tiny" in _notes(at), _notes(at)
    for prompt, message in (("", "No prompt: the model starts a review from nothing"),
                            ("   \n\t ", "No prompt: the model starts a review from nothing"),
                            (("word " * 20_000)[:100_000], "tokens were left out"),
                            ("😀🎬🍿 🤩", None), ("bad\x00\x07\x1b\x7fchars", None), ("הסרט היה נהדר", None)):
        at.text_area(key="dec_prompt").set_value(prompt).run()
        assert not at.exception, (prompt[:20], at.exception)
        if message is None:       # lm-tiny's byte-level tokenizer spells any text: nothing is unknown
            assert "[UNK]" not in _notes(at), (prompt[:20], _notes(at))
        else:
            assert message in _notes(at), (prompt[:20], _notes(at))
        assert any("generated-text" in m.value for m in at.markdown)


def test_decoder_page_settings_at_their_edges_each_get_a_message(app, monkeypatch, trained_checkpoints):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/decoder.py").run()
    at.text_area(key="dec_prompt").set_value("The acting was").run()
    for kind, key, value, message in (
            ("number_input", "dec_top_k", 0, "top-k 0: off"),
            ("slider", "dec_top_p", 0.0, "top-p 0 keeps only the most likely token"),
            ("slider", "dec_top_p", 1.0, "top-p 1: off"),
            ("number_input", "dec_temperature", 0.0, "Temperature 0 is greedy"),
            ("number_input", "dec_temperature", 100.0, "flattens the probabilities"),
            ("number_input", "dec_max_new", 512, "max new tokens cut from 512 to 63")):
        getattr(at, kind)(key=key).set_value(value).run()
        assert not at.exception, (key, value, at.exception)
        assert message in _notes(at), (key, value, _notes(at))
    at.slider(key="dec_step").set_value(5).run()                  # a step's top 10 candidates
    assert any("Step 5: the 10 most likely next tokens" in json.dumps(json.loads(c.proto.spec))
               for c in at.get("vega_lite_chart"))
    for key in ("dec_layer", "dec_position"):
        widget = next((s for s in at.slider if s.key == key), None)
        if widget is not None:
            widget.set_value(widget.max).run()
            assert not at.exception, (key, at.exception)


def test_decoder_page_shows_each_tokens_expert_for_a_mixture_of_experts(app):
    at = app.run()
    at.session_state["drawn_model"] = RANDOM          # the sidebar's mixture, not SmolLM2
    at.selectbox(key="w_model_ffn").set_value("moe").run()
    at.switch_page("app_pages/decoder.py").run()
    assert not at.exception, at.exception
    titles = json.dumps([json.loads(c.proto.spec) for c in at.get("vega_lite_chart")])
    assert "Each token's first expert" in titles and "Load per expert: 2 of 4 experts per token" in titles
    at.select_slider(key="w_model_n_experts").set_value(8).run()
    at.select_slider(key="w_model_experts_per_token").set_value(1).run()
    assert not at.exception
    assert "1 of 8 experts per token" in json.dumps([json.loads(c.proto.spec) for c in at.get("vega_lite_chart")])


# -- quantization ---------------------------------------------------------------------------------

def test_quantization_page_shows_the_blocks_and_measures_every_format_on_a_trained_run(app, monkeypatch,
                                                                                        trained_checkpoints):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/quantization.py").run()
    assert not at.exception, at.exception
    assert not [s for s in at.slider if s.key == "q_layer"]               # lm-tiny has one layer: no slider
    for matrix in at.selectbox(key="q_matrix").options:
        at.selectbox(key="q_matrix").set_value(matrix).run()
        assert not at.exception, (matrix, at.exception)
    for kind in at.radio(key="q_format").options:
        at.radio(key="q_format").set_value(kind).run()
        assert not at.exception and f"in **{kind}**" in " ".join(m.value for m in at.markdown), kind
    at.number_input(key="q_row").set_value(at.number_input(key="q_row").max).run()
    assert not at.exception and any(c.value.startswith("codes: ") for c in at.caption)
    at.number_input(key="q_reviews").set_value(2)
    at.number_input(key="q_tokens").set_value(8)
    at.multiselect(key="q_formats").set_value([]).run()                # none chosen: said, nothing measured
    assert any("Choose at least one format" in i.value for i in at.info)
    at.multiselect(key="q_formats").set_value(["Q8_0", "Q4_1", "Q4_0", "Q3_1", "Q2_1"])
    at.text_input(key="q_prompt").set_value("").run()               # an empty prompt starts a review
    at.button(key="q_measure").click().run()
    assert not at.exception, at.exception
    table = next(shown(t) for t in at.table if "bits per character" in shown(t).columns)
    assert list(table["format"]) == ["F32", "Q8_0", "Q4_1", "Q4_0", "Q3_1", "Q2_1"]
    quality = table["bits per character"].astype(float)
    # 8 bits keep the model; 2 bits break it (lm-tiny is small: the ends of the scale, not each step)
    assert abs(quality[1] - quality[0]) < 0.02 * quality[0] and quality[5] > quality[0] + 0.05, list(quality)
    assert (table["tokens/s"].astype(float) > 0).all()
    bound = next(shown(t) for t in at.table if "bound (tokens/s)" in shown(t).columns)
    assert (bound["bound (tokens/s)"].astype(float) > 0).all()

    # the learner's quantizer, once it passes: the chosen matrix in their Q4_1, and the model run with it
    from minitx.labs import get_lab
    from minitx.labs.checking import check
    from tests.lab_sources import RIGHT
    from ui.lab_files import LearnerFiles

    LearnerFiles().record("quantize_block", RIGHT["quantize_block"], check(get_lab("quantize_block"), RIGHT["quantize_block"]))
    at.run()
    at.toggle(key="use_mine_quantize_block").set_value(True).run()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Drawn with **your** `quantize_block`" in said
    blocks = next(m.value for m in at.markdown if m.value.startswith("**Your quantizer**"))
    same, total = re.search(r"([\d,]+) of ([\d,]+) blocks exactly", blocks).groups()
    assert same == total, blocks
    yours = next(shown(t) for t in at.table if "perplexity on 2 test reviews" in shown(t).columns)
    assert yours["perplexity on 2 test reviews"].iloc[1] == yours["perplexity on 2 test reviews"].iloc[2]


def test_every_cell_of_the_logit_lens_keeps_its_token_readable():
    """Black text on every colour the lens's cells can take: a contrast ratio of at least 4.5 (WCAG AA)."""
    frame = pd.DataFrame([{"layer": 1, "after token": "0 'a'", "predicts": "b", "probability": p} for p in (0, 1)])
    layers = charts.lens(frame, ["0 'a'"]).to_dict()["layer"]
    cells = next(layer for layer in layers if layer["mark"]["type"] == "rect")
    text = next(layer for layer in layers if layer["mark"]["type"] == "text")
    assert text["mark"]["color"] == "black" and "color" not in text["encoding"]
    colours = cells["encoding"]["color"]["scale"]["range"]
    assert cells["encoding"]["color"]["scale"]["domain"] == [0, 1] and len(colours) == 2
    assert all(charts.contrast("#000000", colour) >= 4.5 for colour in colours), colours
    assert charts.contrast("#000000", "#00441b") < 4.5        # the full scheme's darkest green: what it replaced


def test_the_playground_tour_walks_from_training_to_asking_the_newest_classifier(app, monkeypatch, trained_checkpoints):
    from ui.tour import TOURS

    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.button(key="tour_start_playground").click().run()
    steps = TOURS["playground"].steps
    for number, step in enumerate(steps, 1):
        assert not at.exception, (number, at.exception)
        assert f"step {number} of {len(steps)}: **{step.title}**" in at.get("progress")[0].proto.text
        if number < len(steps):
            at.button(key="tour_next").click().run()
    assert at.title[0].value == "Runs & predict"
    assert "Run **tiny**: P(positive) = **" in " ".join(m.value for m in at.markdown)
    at.text_input(key="w_tour_sentence").set_value("   ").run()
    assert not at.exception and "the review is empty" in " ".join(i.value for i in at.info)
    at.button(key="tour_back").click().run()
    assert "step 3 of 4" in at.get("progress")[0].proto.text and not at.exception
    assert any(c.proto.spec and "Training loss of tiny" in c.proto.spec for c in at.get("vega_lite_chart"))


def test_the_attribution_page_takes_apart_a_trained_language_model(app, monkeypatch, trained_checkpoints):
    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/attribution.py").run()
    assert not at.exception and "Run lm-tiny" in _notes(at)
    for key, value in (("attr_target", " the"), ("attr_versus", " a"), ("attr_text", "The film was not")):
        at.text_input(key=key).set_value(value).run()
        assert not at.exception, (key, at.exception)
        shown = " ".join(c.value for c in at.caption)
        total, logit = re.findall(r"add up to \*\*(-?[\d.]+)\*\*; the model's own logit(?: difference)? is "
                                  r"\*\*(-?[\d.]+)\*\*", shown)[0]
        assert total == logit and "the biases and the embedding" in shown
    assert any(c.proto.spec and '"edge"' in c.proto.spec for c in at.get("vega_lite_chart"))


def test_the_runs_page_exports_a_language_model_and_shows_it_is_the_same_in_transformers(app, monkeypatch,
                                                                                          trained_checkpoints):
    import zipfile
    from io import BytesIO

    monkeypatch.setenv("MINITX_CHECKPOINTS", str(trained_checkpoints))
    at = app.run()
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="predict_run").set_value("lm-tiny").run()
    assert not at.exception, at.exception
    labels = [b.label for b in at.get("download_button")]
    assert any(label.startswith("Hugging Face folder (.zip, 0.") for label in labels), labels
    assert "GGUF, f32 (0.15 MB)" in labels, labels
    at.selectbox(key="export_type").set_value("q4_1").run()
    assert "GGUF, q4_1 (0.03 MB)" in [b.label for b in at.get("download_button")]
    from ui.export_section import exported

    data, name = exported(str(trained_checkpoints / "lm-tiny"), (trained_checkpoints / "lm-tiny").stat().st_mtime,
                          "hf", "f32")
    assert name == "lm-tiny-hf.zip" and sorted(zipfile.ZipFile(BytesIO(data)).namelist()) == [
        f"lm-tiny/{file}" for file in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                                       "tokenizer_config.json")]
    at.button(key="same_compare").click().run()
    assert not at.exception, at.exception
    difference = next(m for m in at.metric if m.label == "largest logit difference")
    assert float(difference.value) < 1e-4
    assert "The same 16 greedy tokens." in _notes(at)
    monkeypatch.setattr("ui.export_section.transformers_missing", lambda: "pip install transformers==5.25.0")
    at.run()
    assert "`pip install transformers==5.25.0` adds it" in _notes(at)
