"""Page 7: train the model from the sidebar on IMDB, live, in the background: a sentiment
classifier (the encoder) or a language model (the decoder)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from minitx.config import LR_SCHEDULES, TOKENIZER_KINDS, TRUNCATIONS, ModelConfig, TrainConfig
from minitx.curves import eval_curve, loss_curve, samples
from minitx.estimate import describe_lengths, estimate_run, representative_lengths, time_training_step
from minitx.hardware import bf16_units, cpu_name
from minitx.presets import PRESETS
from minitx.runs import RunRegistry, RunSnapshot, format_duration
from minitx.train import IMDB_SPLIT_SIZE, LM_POOL_SIZE, Trainer, check_run, lr_schedule, resolve_device
from ui import charts
from ui.common import literal_markdown, remembered, review_text, show_source
from ui.access import host_refusal
from ui.labs import call_learner, mine_caption, use_my_code
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


def precisions_here() -> list[str]:
    return ["fp32", "bf16", "fp16"] if torch.cuda.is_available() else ["fp32", "bf16"]


def precision_line(train_cfg: TrainConfig) -> str:
    """The device and precision the run will use, and what this processor has for bf16."""
    device = resolve_device(train_cfg.device)
    if device.type == "cuda":
        return f"Trains on {torch.cuda.get_device_name(0)} in {train_cfg.precision}."
    units = bf16_units()
    return (f"Trains on the CPU ({cpu_name()}) in {train_cfg.precision}; bf16 units: "
            f"{', '.join(units) if units else 'none'}.")


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
    """The run's time: steps of this model timed here at typical lengths, times the steps, plus
    evaluations and data. A language model's steps are all blocks of max_len tokens."""
    review_lengths = sample_lengths(train_cfg.tokenizer, train_cfg.vocab_size, train_cfg.lowercase)
    if model_cfg.is_lm:
        lengths, per_review = [model_cfg.max_len], sum(review_lengths) / max(1, len(review_lengths))
        what = f"on blocks of {model_cfg.max_len} tokens"
        batches = f"{train_cfg.batch_size} blocks"
    else:
        lengths, per_review = representative_lengths(review_lengths, model_cfg.max_len), None
        what = describe_lengths(lengths, model_cfg.max_len)
        batches = f"{train_cfg.batch_size} reviews"
    seconds = step_seconds(model_cfg, train_cfg.batch_size, tuple(lengths), machine_busy)
    estimate = estimate_run(train_cfg, seconds, model_cfg, per_review)
    where = "while another run trains on it (so too long) " if machine_busy else ""
    st.markdown(
        f"**Estimated time: about {format_duration(estimate.total_seconds)}** "
        f"({estimate.steps:,} steps of {batches}, {seconds * 1000:.0f} ms "
        f"each: the mean of steps timed just now on this machine {where}{what}; "
        f"{estimate.evaluations} evaluations {format_duration(estimate.eval_seconds)}; "
        f"data {format_duration(estimate.prepare_seconds)}).")
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
        st.caption(f":material/person: Every layer calls **your** {', '.join(snap.learner_code)} (7 · Build it), "
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
        draw_samples(samples(snap.evals), key="train_sample_step")


def draw_samples(written: list[dict], key: str) -> None:
    """What the model wrote at each evaluation, from a fixed prompt, on a slider: from random
    pieces at step 0 to sentences."""
    if not written:
        return
    st.markdown("**What the model wrote as it learned** (the same prompt and seed at every evaluation)")
    steps = [w["step"] for w in written]
    # a new slider with every evaluation, so that during a run it shows the newest sample
    step = st.select_slider("at training step", steps, value=steps[-1], key=f"{key}_{len(steps)}") \
        if len(steps) > 1 else steps[0]
    chosen = written[steps.index(step)]
    st.code(chosen["sample"], language=None, wrap_lines=True)
    if chosen.get("bits_per_char") is not None:
        st.caption(f"Step {step}: {chosen['bits_per_char']:.3f} bits per character on the validation text.")


def draw_lm_results(snap: RunSnapshot) -> None:
    """A language model's score beside what ordinary compressors need for the same text."""
    summary = snap.summary or {}
    if summary.get("test_bits_per_char") is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("test bits per character", f"{summary['test_bits_per_char']:.3f}", help=summary.get("test_subset"))
    b.metric("test perplexity (per token)", f"{summary['test_perplexity']:.1f}")
    c.metric("wall time", format_duration(summary.get("wall_seconds")))
    d.metric("tokens/s", f"{summary.get('tokens_per_second', 0):,.0f}")
    baselines = summary.get("baselines") or {}
    rows = pd.DataFrame([{"model": "this model", "bits per character": summary["test_bits_per_char"]}]
                        + [{"model": name, "bits per character": value} for name, value in baselines.items()])
    st.altair_chart(charts.bars(rows, "model", "bits per character",
                                title="Bits per character on the same held-out text (lower is better)"),
                    key="train_lm_baselines")
    st.caption("A language model is a compressor: the probability it gives each next token is what an "
               "arithmetic coder would need. zlib (gzip), bz2 and xz are ordinary compressors; the "
               "unigram model knows each token's frequency and nothing else."
               + (f" Saved to `{snap.checkpoint}`: generate from it on **6 · Decoder & generation**."
                  if snap.checkpoint else ""))
    mine = use_my_code("bits_per_char")
    if mine and summary.get("test_tokens"):
        args = (summary["test_loss"], summary["test_tokens"], summary["test_chars"])
        yours, problem = call_learner("bits_per_char", mine, *args)
        if problem:
            st.error(f"Your bits_per_char could not run: {problem}")
        else:
            mine_caption("bits_per_char")
            st.metric("test bits per character, by your function", f"{float(yours):.3f}",
                      help=f"bits_per_char({args[0]:.4f} nats per token, {args[1]:,} tokens, {args[2]:,} characters)")


def draw_results(snap: RunSnapshot) -> None:
    if snap.model_config.is_lm:
        draw_lm_results(snap)
        return
    summary = snap.summary or {}
    if summary.get("test_accuracy") is None:
        if snap.status == "stopped":
            st.caption("Stopped before its first evaluation: there is no accuracy to report.")
        return
    a, b, c, d = st.columns(4)
    a.metric("test accuracy", f"{summary['test_accuracy']:.4f}", help=summary.get("test_subset"))
    b.metric("validation accuracy", f"{summary['val_accuracy']:.4f}" if summary.get("val_accuracy") else "—",
             help=f"The weights of step {summary.get('best_step')} were kept: the best on validation.")
    c.metric("wall time", format_duration(summary.get("wall_seconds")))
    d.metric("tokens/s", f"{summary.get('tokens_per_second', 0):,.0f}")
    st.caption(f"Saved to `{snap.checkpoint}`: see **9 · Runs & predict** to compare it and ask it "
               f"about your own review." if snap.checkpoint else "Not saved.")
    left, right = st.columns([1, 2])
    if summary.get("confusion"):
        left.altair_chart(charts.confusion(summary["confusion"]), key="train_confusion")
    with right:
        st.markdown("**The most confidently wrong test reviews**")
        for item in summary.get("confidently_wrong") or []:
            truth = "positive" if item["label"] == 1 else "negative"
            said = item["p_positive"] if item["label"] == 0 else 1 - item["p_positive"]
            text = review_text(item["text"])
            with st.expander(f"{truth} review, {said:.0%} sure it was {'negative' if item['label'] else 'positive'}: "
                             f"{literal_markdown(text[:70])}…"):
                st.markdown(literal_markdown(text) + (" …" if item["truncated"] else ""))   # as typed


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
        draw_results(snap)


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
        lm = task == "lm"
        most = MOST_REVIEWS[task]
        if st.session_state.get(TRAIN("train_size"), 0) > most:    # "all" of the other task's reviews
            st.session_state[TRAIN("train_size")] = most
        data_col, opt_col = st.columns(2)
        with data_col:
            st.markdown("**Data and tokenizer**")
            train_size = st.number_input("training reviews (incl. validation)", 20, most, step=500,
                                         help=f"{most:,} is all of them: " + (
                                             "the unlabelled 50,000 and the training split's 25,000."
                                             if lm else "a balanced subset of the training split."),
                                         **knob("train_size"))
            test_size = st.number_input("test reviews", 20, IMDB_SPLIT_SIZE, step=500,
                                        help="Held-out reviews of other movies; 25,000 is the whole test split.",
                                        **knob("test_size"))
            tokenizer = st.selectbox("tokenizer", TOKENIZER_KINDS, **knob("tokenizer"))
            vocab_size = st.number_input("vocabulary size", 100, 60_000, step=1_000, **knob("vocab_size"))
            st.caption(f"max_len {cfg.max_len} is in the sidebar, with the model.")
        with opt_col:
            st.markdown("**Optimisation**")
            epochs = st.slider("epochs", 1, 10, **knob("epochs"))
            batch_size = st.select_slider("batch size", [8, 16, 32, 64, 128], **knob("batch_size"))
            lr = st.number_input("peak learning rate", 1e-6, 100.0, format="%.1e", step=1e-4, **knob("lr"),
                                 help="Far too high (try 10) and the loss may become NaN: the run then stops and says so.")
            warmup = st.slider("warmup (share of steps)", 0.0, 0.5, step=0.05, **knob("warmup_fraction"))
            weight_decay = st.number_input("weight decay", 0.0, 1.0, step=0.01, **knob("weight_decay"))
            dropout = st.slider("dropout", 0.0, 0.6, step=0.05, **knob("dropout"))
            seed = st.number_input("seed", 0, 1_000_000, **knob("seed"))
        with st.expander("More knobs"):
            m1, m2, m3 = st.columns(3)
            truncation = m1.selectbox("truncation", TRUNCATIONS, **knob("truncation"), disabled=lm,
                                      help="head: keep the start; head_tail: the start and the end "
                                           "(a language model reads whole reviews, in blocks).")
            schedule = m1.selectbox("learning-rate schedule", LR_SCHEDULES, **knob("lr_schedule"))
            floor = m1.slider("learning-rate floor (share of the peak)", 0.0, 0.5, step=0.05,
                              **knob("min_lr_fraction"), help="Where the cosine ends: 0 decays to nothing.")
            grad_clip = m2.number_input("gradient clipping (max norm, 0 = off)", 0.0, 100.0, step=0.5,
                                        **knob("grad_clip"))
            word_dropout = m2.slider("word dropout", 0.0, 0.5, step=0.05, **knob("word_dropout"), disabled=lm,
                                     help="Classifier only: training tokens replaced by [UNK].")
            eval_every = m3.number_input("also evaluate every N steps (0 = epoch ends)", 0, 100_000, step=50,
                                         **knob("eval_every"))
            patience = m3.number_input("early-stopping patience (epochs, 0 = off)", 0, 10, **knob("patience"))
            windows = m2.toggle("windows at random places", **knob("random_windows"), disabled=not lm,
                                help="Language model only: each batch takes windows starting anywhere in the "
                                     "text (nanoGPT's way) instead of the same fixed blocks every epoch.")
            precision = m3.selectbox("precision", precisions_here(), **knob("precision"),
                                     help=PRECISION_HELP)
        name = st.text_input("run name (optional)", max_chars=100, placeholder="e.g. quick-mqa-rope",
                             help="Letters, digits, '.', '_' and '-'. Empty: the date and time.",
                             **remembered("train_run_name", ""))

        model_cfg = train_cfg = problem = None
        try:
            model_cfg = cfg.replace(dropout=dropout, task=task)
            train_cfg = TrainConfig(
                train_size=None if train_size >= most else int(train_size),
                test_size=None if test_size >= IMDB_SPLIT_SIZE else int(test_size), tokenizer=tokenizer,
                vocab_size=int(vocab_size), truncation=truncation, epochs=int(epochs), batch_size=batch_size,
                lr=float(lr), lr_schedule=schedule, warmup_fraction=float(warmup), min_lr_fraction=float(floor),
                random_windows=bool(windows),
                weight_decay=float(weight_decay), grad_clip=float(grad_clip), word_dropout=float(word_dropout),
                eval_every=int(eval_every), patience=int(patience), seed=int(seed),
                lowercase=not lm, val_fraction=0.01 if lm else 0.1, precision=precision)
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
            st.caption(precision_line(train_cfg))
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
        st.info("No run yet in this server session. Saved runs are on **9 · Runs & predict**.")
    else:
        st.subheader("Last run")
        live_panel(run_id)

show_source(RunRegistry.start, RunRegistry.snapshot, Trainer.fit, lr_schedule, estimate_run)
