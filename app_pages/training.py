"""Page 10: train the model from the sidebar on IMDB, live, in the background: a sentiment
classifier (the encoder) or a language model (the decoder)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from minitx.config import CHOICES, HELP, TRAIN_LIMITS, ModelConfig, TrainConfig
from minitx.curves import eval_curve, loss_curve, samples
from minitx.estimate import estimate_for, estimate_run, time_training_step
from minitx.hardware import precisions_here, where_it_trains
from minitx.presets import PRESETS, TASK_ONLY, train_config_for
from minitx.runs import RunRegistry, RunSnapshot, format_duration
from minitx.train import IMDB_SPLIT_SIZE, LM_POOL_SIZE, Trainer, check_run, lr_schedule
from ui import charts, generation, results, tour
from ui.common import remembered, show_source
from ui.access import host_refusal
from ui.live import POLL_SECONDS, continue_button, current_run_id, registry
from ui.model_sidebar import KEY, model_sidebar
from ui.resources import imdb_sample, sample_lengths

PRESET_LABELS = {"Quick": "quick", "Seed recipe": "seed", "Full IMDB": "full", "Tiny (smoke test)": "tiny",
                 "Language model, quick": "lm-quick", "Language model, tiny (smoke test)": "lm-tiny"}
TASK_LABELS = {"classify": "a sentiment classifier (the encoder)", "lm": "a language model (the decoder)"}
MOST_REVIEWS = {"classify": IMDB_SPLIT_SIZE, "lm": LM_POOL_SIZE}    # the most a run can read ("all")
SIDEBAR_FIELDS = ("d_model", "n_heads", "n_kv_heads", "n_layers", "d_ff", "max_len", "pos_encoding",
                  "norm", "norm_position", "ffn", "n_experts", "experts_per_token", "pooling")
TRAIN = "train_{}".format


def apply_preset() -> None:
    """Copy a preset into the sidebar's model values and this page's training knobs."""
    model_cfg, train_cfg = PRESETS[PRESET_LABELS[st.session_state["w_train_preset"]]]
    st.session_state["train_preset"] = st.session_state["w_train_preset"]
    for name in SIDEBAR_FIELDS:
        st.session_state[KEY(name)] = getattr(model_cfg, name)
    st.session_state[TRAIN("dropout")] = model_cfg.dropout
    st.session_state[TRAIN("task")] = model_cfg.task
    for name, value in train_cfg.to_dict().items():
        if name in ("train_size", "test_size") and value is None:
            value = MOST_REVIEWS[model_cfg.task] if name == "train_size" else IMDB_SPLIT_SIZE
        st.session_state[TRAIN(name)] = value


def knob(name: str):
    """Widget arguments for a training knob, its default taken from the Quick preset."""
    quick_model, quick_train = PRESETS["quick"]
    default = getattr(quick_model, name) if name in ("dropout", "task") else getattr(quick_train, name)
    return remembered(TRAIN(name), default)


PRECISION_HELP = ("fp32: float32 everywhere. bf16: the matrix products in bfloat16 (autocast), the weights, "
                  "optimiser, softmax, norms and loss still in float32; fp16 needs a CUDA GPU. bf16 becomes the "
                  "CPU's default only where it trains at least 1.3x as fast at equal quality; on the CPUs "
                  "measured so far it does not (benchmarks/README.md).")


def press_start() -> None:
    """Start's on_click only notes the press; the page starts the run from the knobs as they are
    in this rerun. (Arguments bound to the button would be the form drawn before: a Start
    clicked right after a change, before the page had redrawn, trained the old settings.)"""
    st.session_state.pop("train_error", None)
    st.session_state["train_start_pressed"] = True


def start(model_cfg: ModelConfig, train_cfg: TrainConfig, name: str) -> None:
    """Start the run and show it (the page again, now with the live run), or say why not."""
    refusal = host_refusal("start a training run")
    if refusal:
        st.session_state["train_error"] = f"Not started: {refusal}"
        return
    try:
        registry().start(model_cfg, train_cfg, name.strip() or None)
    except ValueError as error:   # busy (here or in another server), a taken or hostile name, ...
        st.session_state["train_error"] = f"Not started: {error}"
        return
    st.rerun()


def stop(run_id: str) -> None:
    registry().stop(run_id)


@st.cache_data(show_spinner="Timing a few training steps of this model...", max_entries=64)
def step_seconds(model_cfg: ModelConfig, batch_size: int, lengths: tuple[int, ...], machine_busy: bool) -> float:
    """machine_busy (another server's run trains) only keys the cache: a time taken on a busy
    machine is not the one to show once it is free."""
    return time_training_step(model_cfg, batch_size, lengths)


def show_estimate(model_cfg: ModelConfig, train_cfg: TrainConfig, machine_busy: bool) -> None:
    """The run's time (minitx.estimate.estimate_for): steps of this model timed here at typical lengths,
    times the steps, plus evaluations and what the run does before its first step."""
    review_lengths = sample_lengths(train_cfg.tokenizer, train_cfg.vocab_size, train_cfg.lowercase)
    estimate, seconds, what = estimate_for(
        model_cfg, train_cfg, review_lengths, lambda *args: step_seconds(*args, machine_busy))
    where = "while another run trains on it (so too long) " if machine_busy else ""
    st.markdown(
        f"**Estimated time: about {format_duration(estimate.total_seconds)}** "
        f"({estimate.steps:,} steps of {train_cfg.batch_size} {'blocks' if model_cfg.is_lm else 'reviews'}, "
        f"{seconds * 1000:.0f} ms each: the mean of steps timed just now on this machine {where}{what}; "
        f"{estimate.evaluations} evaluations {format_duration(estimate.eval_seconds)}; "
        f"starting and the data {format_duration(estimate.prepare_seconds)}).")
    draw_schedule(train_cfg, estimate.steps)


def draw_schedule(train_cfg: TrainConfig, total_steps: int) -> None:
    """The learning rate at every step of the run to come, as the trainer will set it."""
    rates = lr_schedule(train_cfg, total_steps)
    every = max(1, total_steps // 300)                    # a few hundred points draw the same line
    rows = pd.DataFrame({"step": range(0, total_steps, every), "learning rate": rates[::every]})
    st.altair_chart(charts.schedule(rows), key="train_schedule")
    floor = f"down to {train_cfg.min_lr_fraction:g} of it" if train_cfg.min_lr_fraction else "down to 0"
    st.caption(f"The learning rate of each step: up from 0 over the first {train_cfg.warmup_fraction:.0%} of the "
               f"steps, then " + (f"a cosine from {train_cfg.lr:.1e} {floor}." if train_cfg.lr_schedule == "cosine"
                                  else f"{train_cfg.lr:.1e} to the end."))


def status_line(snap: RunSnapshot) -> str:
    if snap.status == "queued":
        return f"{snap.phase}…"
    parts = [f"step {snap.step:,}/{snap.total_steps:,}" if snap.total_steps else None,
             f"epoch {snap.epoch}/{snap.epochs}" if snap.epoch else None,
             f"ETA {format_duration(snap.eta_seconds)}" if snap.status == "running" else None,
             f"{snap.tokens_per_second:,.0f} tokens/s" if snap.tokens_per_second else None,
             f"{format_duration(snap.elapsed)} elapsed"]
    return " · ".join(p for p in parts if p)


def draw_status(snap: RunSnapshot) -> None:
    """The run's name, status, model and Stop: redrawn only when the status changes."""
    icon = {"queued": "hourglass_top", "running": "directions_run", "stopping": "pan_tool",
            "stopped": "stop_circle", "finished": "check_circle", "failed": "error"}[snap.status]
    st.markdown(f"#### :material/{icon}: Run `{snap.name}`: **{snap.status}**")
    st.caption(snap.model_config.summary())
    if snap.learner_code:
        st.caption(f":material/person: Every layer calls **your** {', '.join(snap.learner_code)} (9 · Build it), "
                   f"not minitx's.")
    if snap.status in ("queued", "running"):
        st.button("Stop", key="train_stop", on_click=stop, args=(snap.run_id,), icon=":material/stop:",
                  help="Stops after the current step and saves the run: the model chosen on validation so "
                       "far, and all that Continue needs to go on from there.")
    if snap.status == "failed":
        st.error(f"The run failed: {snap.reason}")
    elif snap.reason:
        st.info(snap.reason)
    if snap.status in ("stopped", "finished") and snap.checkpoint:
        continue_button(snap.name, snap.status, snap.epochs, key="train")


def draw_progress(snap: RunSnapshot) -> None:
    """The progress bar and the loss chart: what changes every second."""
    st.progress(snap.progress, text=status_line(snap))
    if snap.steps:
        # the spec never changes during a run, only the rows: the browser just feeds in the new data
        st.vega_lite_chart(pd.DataFrame(loss_curve(snap.steps, max_points=400)),
                           charts.live_training_spec(snap.total_steps), key="live_loss", width="stretch")


def draw_evaluations(snap: RunSnapshot) -> None:
    """The evaluation charts (accuracy or bits per character, and loss) and, for a language model,
    what it wrote at each evaluation. They change once per evaluation, so they are drawn outside
    the once-a-second fragment."""
    evals = eval_curve(snap.evals)
    if not evals:
        if snap.active:
            st.caption("Evaluation charts appear after the first evaluation "
                       "(at the end of epoch 1, or every N steps: see More knobs).")
        return
    rows = pd.DataFrame(evals)      # both charts read the same rows, each filters its metric
    metrics = ("bits_per_char", "loss") if snap.model_config.is_lm else ("accuracy", "loss")
    for column, metric in zip(st.columns(2), metrics):
        column.vega_lite_chart(rows, charts.evaluation_spec(metric, snap.total_steps),
                               key=f"live_eval_{metric}", width="stretch")
    if snap.model_config.is_lm:
        st.markdown("**What the model wrote as it learned** (the same prompt and seed at every evaluation)")
        generation.samples_slider(samples(snap.evals), key="train_sample_step")


def live_panel(run_id: str) -> None:
    """The status, then a fragment that redraws progress and the loss chart every POLL_SECONDS.

    When the status changes (finished, stopped from another tab, failed) or an evaluation
    arrives, the fragment reruns the whole page: the status line, the evaluation charts and
    the results are redrawn (and polling stops once the run has ended).
    """
    snap = registry().snapshot(run_id)
    draw_status(snap)

    @st.fragment(run_every=POLL_SECONDS if snap.active else None)
    def panel():
        now = registry().snapshot(run_id)
        if now.status != snap.status or len(now.evals) != len(snap.evals):
            st.rerun()          # before drawing: the bar must never run ahead of the status line
        draw_progress(now)

    panel()
    draw_evaluations(snap)
    if not snap.active:
        saved = ((f"Saved to `{snap.checkpoint}`: " + ("generate from it on **6 · Decoder & generation**."
                  if snap.model_config.is_lm else "see **11 · Runs & predict** to compare it and ask it about "
                  "your own review.")) if snap.checkpoint else "Not saved.")
        if snap.status == "stopped" and not (snap.summary or {}).get("test_accuracy") and not snap.model_config.is_lm:
            st.caption("Stopped before its first evaluation: there is no accuracy to report.")
        results.draw(snap.model_config, snap.summary or {}, "train", saved)


# The knobs the page shows, each a TrainConfig field (and dropout, the model's), by column: its label,
# its widget and what the widget needs beyond the field table (minitx.config: choices, limits, help).
KNOBS = {
    "data": {"train_size": ("training reviews (incl. validation)", "number", {"min_value": 20, "step": 500}),
             "test_size": ("test reviews", "number", {"min_value": 20, "max_value": IMDB_SPLIT_SIZE, "step": 500}),
             "tokenizer": ("tokenizer", "select", {}),
             "vocab_size": ("vocabulary size", "number", {"min_value": 100, "max_value": 60_000, "step": 1_000})},
    "optimisation": {"epochs": ("epochs", "slider", {"max_value": 10}),
                     "batch_size": ("batch size", "steps", {"options": [8, 16, 32, 64, 128]}),
                     "lr": ("peak learning rate", "number", {"min_value": 1e-6, "max_value": 100.0, "format": "%.1e",
                                                             "step": 1e-4, "help": "Far too high (try 10) and the "
                                                             "loss may become NaN: the run then stops and says so."}),
                     "warmup_fraction": ("warmup (share of steps)", "slider", {"max_value": 0.5, "step": 0.05}),
                     "weight_decay": ("weight decay", "number", {"max_value": 1.0, "step": 0.01}),
                     "dropout": ("dropout", "slider", {"max_value": 0.6, "step": 0.05}),
                     "seed": ("seed", "number", {"max_value": 1_000_000})},
    "more 1": {"truncation": ("truncation", "select", {}), "lr_schedule": ("learning-rate schedule", "select", {}),
               "min_lr_fraction": ("learning-rate floor (share of the peak)", "slider",
                                   {"max_value": 0.5, "step": 0.05})},
    "more 2": {"grad_clip": ("gradient clipping (max norm, 0 = off)", "number", {"max_value": 100.0, "step": 0.5}),
               "word_dropout": ("word dropout", "slider", {"max_value": 0.5, "step": 0.05}),
               "random_windows": ("windows at random places", "toggle", {})},
    "more 3": {"eval_every": ("also evaluate every N steps (0 = epoch ends)", "number",
                              {"max_value": 100_000, "step": 50}),
               "patience": ("early-stopping patience (epochs, 0 = off)", "number", {"max_value": 10}),
               "precision": ("precision", "select", {"help": PRECISION_HELP})},
}
WIDGETS = {"number": "number_input", "slider": "slider", "select": "selectbox", "steps": "select_slider",
           "toggle": "toggle"}
KNOBS_BY_NAME = {name: spec for column in KNOBS.values() for name, spec in column.items()}


def knob_widget(column, name: str, task: str):
    """One knob, drawn from the field table: a select's choices, a number's limits (the fields without
    limits are shares, from 0), its help; off where the field means nothing for this task."""
    label, kind, options = KNOBS_BY_NAME[name]
    options = {"help": HELP.get(name), **options}
    if kind in ("number", "slider"):
        low, high = TRAIN_LIMITS.get(name, (0.0, None))
        options = {"min_value": low, **({"max_value": high} if high is not None else {}), **options}
    if kind == "select":
        options["options"] = precisions_here() if name == "precision" else CHOICES[name]
    if name == "train_size":
        options["max_value"] = MOST_REVIEWS[task]
    if name in TASK_ONLY:
        options["disabled"] = TASK_ONLY[name] != task
    return getattr(column, WIDGETS[kind])(label, **knob(name), **options)


def configure_run(cfg: ModelConfig, start_pressed: bool) -> None:
    """The preset, every knob, the time estimate and Start (only drawn when no run is busy)."""
    with st.container(border=True):
        st.selectbox("start from a preset", list(PRESET_LABELS),
                     **{**remembered("train_preset", "Quick"), "on_change": apply_preset, "args": ()},
                     help="Sets the sidebar's model and every knob below. Quick: about 0.86 in under 2 minutes; "
                          "Full IMDB: 0.88 in about 4 minutes; Seed recipe: the original write-up, 12 minutes; "
                          "Language model, quick: about 2 bits per character in under 5 minutes.")
        task = st.radio("train", list(TASK_LABELS), format_func=TASK_LABELS.get, horizontal=True, **knob("task"),
                        help="The same blocks: the language model adds a causal mask and predicts the next token.")
        if st.session_state.get(TRAIN("train_size"), 0) > MOST_REVIEWS[task]:    # "all" of the other task's
            st.session_state[TRAIN("train_size")] = MOST_REVIEWS[task]
        values = {}
        data_col, opt_col = st.columns(2)
        for column, group, title in ((data_col, "data", "Data and tokenizer"),
                                     (opt_col, "optimisation", "Optimisation")):
            column.markdown(f"**{title}**")
            values.update({name: knob_widget(column, name, task) for name in KNOBS[group]})
        data_col.caption(f"max_len {cfg.max_len} is in the sidebar, with the model.")
        with st.expander("More knobs"):
            for column, group in zip(st.columns(3), ("more 1", "more 2", "more 3")):
                values.update({name: knob_widget(column, name, task) for name in KNOBS[group]})
        name = st.text_input("run name (optional)", max_chars=100, placeholder="e.g. quick-mqa-rope",
                             help="Letters, digits, '.', '_' and '-'. Empty: the date and time.",
                             **remembered("train_run_name", ""))
        model_cfg = train_cfg = problem = None
        try:
            model_cfg = cfg.replace(dropout=values.pop("dropout"), task=task)
            values["train_size"] = None if values["train_size"] >= MOST_REVIEWS[task] else int(values["train_size"])
            values["test_size"] = None if values["test_size"] >= IMDB_SPLIT_SIZE else int(values["test_size"])
            train_cfg = train_config_for(task, values)
            check_run(model_cfg, train_cfg)
        except ValueError as error:
            problem = f"This run cannot start: {error}"
        if problem is None and imdb_sample() is None:
            problem = "IMDB could not be loaded: set MINITX_IMDB to a local copy of it, or go online."
        if start_pressed and problem is None:
            start(model_cfg, train_cfg, name)
        elsewhere = registry().busy_reason()     # none trains in this server: another one's run?
        if problem is None:
            show_estimate(model_cfg.replace(vocab_size=train_cfg.vocab_size), train_cfg, elsewhere is not None)
            st.caption(where_it_trains(train_cfg.device, train_cfg.precision))
        else:
            st.error(problem)
        if elsewhere and not st.session_state.get("train_error"):
            st.warning(elsewhere[:1].upper() + elsewhere[1:], icon=":material/hourglass_top:")
        st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=problem is not None,
                  on_click=press_start, key="train_start")
        if st.session_state.get("train_error"):
            st.error(st.session_state["train_error"])


# -- the page ------------------------------------------------------------------------------

cfg = model_sidebar()
st.title("Training")
tour.panel("training")
st.markdown(
    "Train the model in the sidebar on IMDB reviews, here, now: as a sentiment classifier, or as a "
    "language model that learns to write reviews. The run trains in a separate process, so it goes "
    "on when you switch pages, reload or open a second tab; every tab shows it. Pick a preset, "
    "change any knob (the model itself is in the sidebar), and press Start.")

start_pressed = st.session_state.pop("train_start_pressed", False)
run_id = current_run_id()
if registry().active() is not None:
    # while a run trains, the page is only the live panel: one run at a time, and a big form
    # redrawn with every update would take CPU from the training
    st.caption("One run trains at a time on this machine: the knobs for the next run come back "
               "when this one finishes or is stopped.")
    busy = registry().busy_reason() if start_pressed else None
    if busy:    # a Start from a tab that had not seen this run yet
        st.error(f"Not started: {busy}")
    live_panel(run_id)
else:
    configure_run(cfg, start_pressed)
    if run_id is None:
        st.info("No run yet in this server session. Saved runs are on **11 · Runs & predict**.")
    else:
        st.subheader("Last run")
        live_panel(run_id)

show_source(RunRegistry.start, RunRegistry.snapshot, Trainer.fit, lr_schedule, estimate_run)
