"""Page 11: the saved runs: compare them, manage them, ask a classifier about your own review or
have a language model write."""

from __future__ import annotations

import functools
import random

import pandas as pd
import streamlit as st
import torch

from minitx.checkpoint import delete_run, rename_run, run_zip
from minitx.curves import epoch_curves, samples
from minitx.predict import METHOD, predict
from minitx.runs import format_duration
from minitx.train import can_resume
from ui import charts, export_section, generation, results, tour
from ui.common import review_text, show_source, table_height, token_labels
from ui.live import continue_button, registry
from ui.model_sidebar import model_sidebar
from ui.resources import checkpoints_dir, imdb_test_sample, loaded_run, saved_runs


def table_row(info) -> dict:
    if not info.readable:
        return {"run": info.name, "status": "unreadable", "model": info.error}
    m, t = info.metrics, info.train_config
    return {"run": info.name, "status": m.get("status"), "created": m.get("created"),
            "task": "language model" if info.model_config.is_lm else "sentiment",
            "model": info.model_config.summary(),
            "heads / KV": f"{info.model_config.n_heads} / {info.model_config.n_kv_heads}",
            "tokenizer": f"{t.tokenizer} {info.model_config.vocab_size:,}",
            "test accuracy": m.get("test_accuracy"), "test bits/char": m.get("test_bits_per_char"),
            "test set": m.get("test_subset"), "wall time": format_duration(m.get("wall_seconds")),
            "your code": ", ".join(m.get("learner_code") or []) or "—"}


def do_rename(old: str) -> None:
    new = st.session_state.get("runs_new_name", "").strip()
    try:
        rename_run(checkpoints_dir(), old, new)
        st.session_state["runs_message"] = ("success", f"Renamed {old} to {new}.")
        st.session_state["runs_manage"] = new
    except (ValueError, OSError) as error:
        st.session_state["runs_message"] = ("error", f"Not renamed: {error}")


def do_delete(name: str) -> None:
    try:
        delete_run(checkpoints_dir(), name)
        st.session_state["runs_message"] = ("success", f"Deleted {name}.")
    except (ValueError, OSError) as error:
        st.session_state["runs_message"] = ("error", f"Not deleted: {error}")
    st.session_state.pop("runs_confirm_delete", None)


def draw_with_svg(column, chart, key: str, file_name: str) -> None:
    """A chart, and a button that saves it as SVG (made only when clicked)."""
    column.altair_chart(chart, key=key, width="stretch")
    column.download_button("Download as SVG", data=functools.partial(charts.svg, chart), file_name=file_name,
                           mime="image/svg+xml", key=f"{key}_svg", icon=":material/download:",
                           on_click="ignore")


def draw_random_review() -> None:
    sample = imdb_test_sample()
    if sample is None:
        st.session_state["runs_message"] = ("error", "IMDB could not be loaded: no test review to draw.")
        return
    index = random.randrange(len(sample[0]))
    text = review_text(sample[0][index])
    st.session_state["predict_text"] = text
    st.session_state["predict_drawn"] = (text, "positive" if sample[1][index] else "negative")


@st.cache_data(show_spinner=False, max_entries=64)
def predicted(path: str, modified: float, text: str):
    """predict() once per run and text: the page reruns on every slider move below it."""
    run = loaded_run(path, modified)
    return predict(run.model, run.tokenizer, text, run.train_config.truncation)


# -- the page ------------------------------------------------------------------------------

model_sidebar()
st.title("Runs & predict")
tour.panel("runs")
st.markdown(f"Every run saved in `{checkpoints_dir()}/`, from this page or from the command line "
            "(`python -m minitx.train`). Compare their curves, keep the good ones, delete the rest, and "
            "ask any of them what it thinks of a review.")
message = st.session_state.pop("runs_message", None)
if message:
    getattr(st, message[0])(message[1])

infos = saved_runs()
active = registry().active()
if active:
    st.info(f"Run {registry().snapshot(active).name} is training: it appears here once saved.")
if not infos:
    st.info("No runs yet: start one on **10 · Training**, or run `python -m minitx.train --preset quick`.")
    st.stop()

frame = pd.DataFrame([table_row(i) for i in infos])
st.dataframe(frame, hide_index=True, height=min(table_height(frame), 420), width="stretch",
             column_config={"test accuracy": st.column_config.NumberColumn(format="%.4f"),
                            "test bits/char": st.column_config.NumberColumn(format="%.3f")})
readable = [i for i in infos if i.readable]
by_name = {i.name: i for i in infos}
broken = [i for i in infos if not i.readable]
if broken:
    st.warning(f"{len(broken)} run folder(s) cannot be read (the reason is in the table); "
               f"they are skipped everywhere else. Delete them below.")

# -- compare ---------------------------------------------------------------------------------
st.header("Compare runs")
st.caption("Overlay runs to see what a change did: MHA vs GQA vs MQA (KV heads), sinusoidal vs RoPE, "
           "pre- vs post-norm. Curves are against epochs, so runs of different sizes line up. "
           "Each chart's toolbar (top right, on hover) saves it as a PNG; the buttons below them, as SVG.")
chosen = st.multiselect("runs to overlay", [i.name for i in readable],
                        default=[i.name for i in readable[:2]], key="runs_overlay")
if chosen:
    loss_rows, eval_rows = [], []
    for name in chosen:
        loss, evals = epoch_curves(by_name[name].metrics.get("history") or {})
        loss_rows += [{"run": name, **row} for row in loss]
        eval_rows += [{"run": name, **row} for row in evals]
    left, right = st.columns(2)
    if loss_rows:
        draw_with_svg(left, charts.overlay(pd.DataFrame(loss_rows), "smoothed", "Training loss (smoothed)",
                                           "cross-entropy"), "runs_overlay_loss", "training-loss.svg")
    evals_frame = pd.DataFrame(eval_rows)
    if "val_accuracy" in evals_frame:
        draw_with_svg(right, charts.overlay(evals_frame.dropna(subset=["val_accuracy"]), "val_accuracy",
                                            "Validation accuracy", "accuracy"),
                      "runs_overlay_acc", "validation-accuracy.svg")
    if "val_bits_per_char" in evals_frame:      # language models: lower is better
        draw_with_svg(right, charts.overlay(evals_frame.dropna(subset=["val_bits_per_char"]), "val_bits_per_char",
                                            "Validation bits per character", "bits per character"),
                      "runs_overlay_bpc", "validation-bits-per-char.svg")

# -- manage ----------------------------------------------------------------------------------
st.header("Manage")
names = [i.name for i in infos]
if st.session_state.get("runs_manage") not in names:      # never an unreadable run by default
    st.session_state["runs_manage"] = (readable or infos)[0].name
target = st.selectbox("run", names, key="runs_manage")
c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
c1.text_input("new name", key="runs_new_name", max_chars=100, placeholder="letters, digits, . _ -")
c1.button("Rename", on_click=do_rename, args=(target,), key="runs_rename")
c2.download_button("Download .zip", data=functools.partial(run_zip, checkpoints_dir(), target),
                   file_name=f"{target}.zip", mime="application/zip", key="runs_zip",
                   icon=":material/download:", on_click="ignore")
if st.session_state.get("runs_confirm_delete") == target:
    c3.button(f"Yes, delete {target}", type="primary", on_click=do_delete, args=(target,),
              key="runs_delete_yes")
    c3.button("Cancel", key="runs_delete_no",
              on_click=lambda: st.session_state.pop("runs_confirm_delete", None))
    st.warning(f"Delete run {target} and its weights for good? This cannot be undone.")
else:
    c3.button("Delete…", key="runs_delete",
              on_click=lambda: st.session_state.update(runs_confirm_delete=target))
chosen_info = by_name[target]
status = (chosen_info.metrics or {}).get("status")
if chosen_info.readable and status in ("stopped", "finished"):
    if can_resume(chosen_info.path):
        continue_button(target, status, chosen_info.train_config.epochs, key="runs", then="app_pages/training.py")
    else:
        st.caption(f"Run {target} was saved before runs could be continued (it has no resume.json).")

if not readable:
    st.stop()

# -- predict or generate ----------------------------------------------------------------------
st.header("Ask a trained model")
pick = st.selectbox("model", [i.name for i in readable], key="predict_run",
                    help="A sentiment classifier scores your review; a language model continues your prompt.")
info = by_name[pick]
try:
    run = loaded_run(str(info.path), info.modified)
except ValueError as error:
    st.error(f"Run {pick} cannot be loaded: {error}")
    st.stop()
if run.model_config.is_lm:
    bpc = run.metrics.get("test_bits_per_char")
    st.caption(f"{run.model_config.summary()} · "
               + (f"{bpc:.3f} bits per character on held-out reviews" if bpc is not None else "never evaluated"))
    results.draw_lm(run.metrics, "runs")
    settings = generation.controls("runs_gen", run.model_config.vocab_size, run.model_config.max_len)
    prompt = settings.pop("prompt")
    out = generation.generated(run.model, run.tokenizer, f"run:{info.path}:{info.modified}", prompt, **settings)
    generation.show(run.tokenizer, prompt, out, settings, key="runs_gen")
    export_section.section(run, info)
    st.header("What it wrote as it learned")
    generation.samples_slider(samples((run.metrics.get("history") or {}).get("evals") or []), key="runs_sample_step")
    show_source(generation.generate, epoch_curves)
    st.stop()
accuracy = run.metrics.get("test_accuracy")
st.caption(f"{run.model_config.summary()} · "
           + (f"test accuracy {accuracy:.4f}" if accuracy is not None else "never evaluated (stopped early)"))
results.draw(run.model_config, run.metrics, "runs")
st.button("Draw a random test review", on_click=draw_random_review, key="predict_random",
          icon=":material/casino:")
text = st.text_area("your review", key="predict_text", max_chars=20_000, height=140,
                    placeholder="The acting was wooden, but the ending made up for everything.")
if text.strip():
    try:
        prediction = predicted(str(info.path), info.modified, text)
    except ValueError as error:
        st.warning(str(error))
    else:
        left, right = st.columns([1, 3])
        left.metric("P(positive)", f"{prediction.p_positive:.1%}",
                    help="The model's softmax probability for the positive class.")
        drawn, truth = st.session_state.get("predict_drawn", (None, None))
        if text == drawn:
            left.caption(f"The reviewer's own label: {truth}.")
        right.progress(prediction.p_positive, text="negative ← → positive")
        if prediction.all_unknown:
            st.warning("The model knows none of these words: every token is [UNK] (not in its "
                       "vocabulary), so this probability says nothing about your review.")
        right.caption(
            f"Token colours: **{METHOD}**, computed by this model. Start from the review with every "
            "word replaced by [UNK] and slide each word's embedding to the real one, adding up the "
            "gradient of the score 'positive minus negative logit' along the way: the token values "
            "add up to how far the score moved. Green pushed towards positive, red towards negative; "
            "the stronger the colour, the larger the push (hover a token for its value)."
            + (f" The review has {prediction.n_tokens_in_text:,} tokens; the model read "
               f"{len(prediction.tokens) - 1:,} of them ({run.train_config.truncation} truncation)."
               if prediction.truncated else ""))
        st.markdown(results.attribution_chips(prediction.tokens, prediction.attributions), unsafe_allow_html=True)
else:
    st.caption("Type a review, or draw one from the test set.")

# -- attention as it learns ------------------------------------------------------------------
st.header("Attention as it learns")
snapshots = run.metrics.get("attention_snapshots")
if not snapshots:
    st.info(f"Run {pick} has no attention snapshots (it was saved before runs recorded them).")
else:
    st.caption(f"One fixed test review, run through {pick} at step 0 (random weights), at every "
               f"evaluation and about 20 times between. Slide to watch the maps go from nearly "
               f"uniform to picking out words. One colour scale for every step of this layer.")
    steps = snapshots["steps"]
    s1, s2 = st.columns([3, 1])
    step = s1.select_slider("training step", steps, value=steps[-1], key="snap_step")
    layer = s2.selectbox("layer", list(range(len(snapshots["maps"][0]))), key="snap_layer")
    every_step = torch.tensor(snapshots["maps"])[:, layer]                 # (S, H, T, T)
    maps = every_step[steps.index(step)]                                   # (H, T, T)
    labels = token_labels(snapshots["tokens"])
    cols = st.columns(2)
    for head in range(maps.size(0)):
        cols[head % 2].altair_chart(
            charts.heatmap(maps[head], labels, labels, value="weight", title=f"layer {layer}, head {head}",
                           cell=11, domain=(0.0, float(every_step.max()))),
            key=f"snap_{head}")

show_source(predict, epoch_curves)
