"""What the Build it page and the concept pages share: the sandbox worker, the lab book, who may
run code here, the pictures of target / yours / difference, and the "use my code" switch.

A learner's code never runs in this process: every request goes to the lab worker
(minitx.labs.worker), which runs it in a job of its own in the sandbox and answers with a verdict.
"""

from __future__ import annotations

import atexit

import pandas as pd
import streamlit as st
import torch

from minitx.labs import get_lab
from minitx.labs.checking import Report
from minitx.labs.trial import TRY_LIMITS, try_ids
from minitx.labs.worker import Answer, LabWorker
from minitx.sandbox.confine import confinement
from minitx.sandbox.verdict import Kind, Verdict
from minitx.sandbox.wire import decode, encode
from ui import charts
from ui.access import code_refusal
from ui.common import static_table
from ui.lab_files import LearnerFiles
from ui.models import pretrained

BUILD_PAGE = "app_pages/build.py"
SANDBOX_TEXT = {
    "isolated": "Checks, the pages drawn with your code, SmolLM2 and training runs with it run it in an "
                "isolated sandbox (bubblewrap): as another user, with no network, no files but Python's, "
                "minitx's and the data (a training run also writes its own run), and nothing it starts "
                "outlives its job.",
    "limits only": "Your code runs in a separate process with limits on time, memory and processes, and "
                   "everything it starts is stopped with its job; it is not isolated from the network or "
                   "your files (bubblewrap cannot run here).",
}


def _close(worker: LabWorker) -> None:
    worker.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def lab_worker() -> LabWorker:
    """The one warm worker of this server (a process of its own), stopped with the server."""
    worker = LabWorker()
    atexit.register(worker.close)
    return worker


@st.cache_resource(show_spinner=False)
def sandbox_mode() -> str:
    """"isolated" where bwrap runs here, else "limits only" (tried once per server)."""
    return confinement().name


def lab_book() -> LearnerFiles:
    """The learner's files and progress (my_labs/, or $MINITX_LABS), read fresh on every run."""
    return LearnerFiles()


def run_job(payload: dict, spinner: str) -> Answer:
    with st.spinner(spinner):
        return lab_worker().request(payload)


def check_and_record(name: str, source: str) -> Report:
    """Check the learner's source in the sandbox, save it and what the check said."""
    lab = get_lab(name)
    answer = run_job({"op": "check", "lab": name, "source": source, "filename": f"{name}.py"},
                     "Checking, in a separate process...")
    try:
        report = Report.from_dict(answer.result) if answer.verdict.ok else None
    except TypeError:                    # it came from the worker: check, not trust
        report = None
    report = report or Report.stopped(lab.name, answer.verdict.message if not answer.verdict.ok
                                      else "The check did not finish.", answer.result)
    report.output = answer.output
    lab_book().record(name, source, report)
    return report


def _result(answer: Answer) -> tuple[object | None, str | None]:
    """A worker's answer as (result, None), or (None, why there is none)."""
    if not answer.verdict.ok:
        return None, answer.verdict.message
    try:
        return decode(answer.result), None
    except (ValueError, KeyError, TypeError):
        return None, "what came back was not well formed."


def run_demo(name: str, source: str, request: dict, others: dict[str, str] | None = None
             ) -> tuple[dict | None, str | None]:
    """A demo (minitx.labs.demos) with the learner's function (and the files of `others`, labs
    to put into the model at the same time): its answer, or None and why not."""
    return _result(run_job({"op": "demo", "lab": name, "source": source, "request": encode(request),
                            "with": others or {}}, "Running your code in a separate process..."))


def call_learner(name: str, source: str, *args) -> tuple[object | None, str | None]:
    """The learner's function on these arguments, in the sandbox: its result, or None and why not."""
    return _result(run_job({"op": "call", "lab": name, "source": source, "args": encode(list(args))},
                           "Running your code in a separate process..."))


# -- pictures ------------------------------------------------------------------------------

def _matrix(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32) if rows else torch.zeros(0, 0)


def draw_picture(picture: dict | None, key: str) -> None:
    """minitx's answer, the learner's and their difference, side by side (minitx.labs.pictures)."""
    if not picture:
        return
    try:
        _draw(picture, key)
    except (KeyError, TypeError, ValueError, RuntimeError):      # it came from the sandbox: check, not trust
        st.caption("The picture of this check could not be drawn.")


def _draw(picture: dict, key: str) -> None:
    st.markdown(f"**{picture['title']}**")
    if picture["kind"] == "heatmap":
        target, yours = _matrix(picture["target"]), _matrix(picture["yours"])
        difference = (yours - target).abs().nan_to_num(nan=float("inf"))
        finite = torch.cat([target[target.isfinite()], yours[yours.isfinite()]])
        domain = (float(finite.min()), float(finite.max())) if finite.numel() else None
        cell = max(8, min(22, 360 // max(1, target.size(1))))
        largest = float(difference.clamp(max=1e30).max()) if difference.numel() else 0.0
        columns = st.columns(3)
        for column, (title, value, matrix, scheme, shared) in zip(columns, (
                ("minitx (target)", "value", target, "blues", domain), ("yours", "value", yours, "blues", domain),
                ("|yours − target|", "difference", difference.clamp(max=1e30), "reds", (0.0, max(largest, 1e-6))))):
            column.altair_chart(charts.heatmap(matrix, picture["rows"], picture["cols"], value=value,
                                               row_title=picture["row_title"], col_title=picture["col_title"],
                                               title=title, scheme=scheme, cell=cell, domain=shared),
                                key=f"{key}-{title}", width="content")
        if not yours.isfinite().all():
            st.caption("Yours has NaN or infinite values: they show as empty cells.")
    elif picture["kind"] == "bars":
        st.altair_chart(charts.paired_bars(picture["labels"], picture["target"], picture["yours"],
                                           picture["x_title"], picture["y_title"]), key=f"{key}-bars")
    else:
        static_table(pd.DataFrame(picture["rows"], columns=picture["columns"]), width="stretch")


def show_report(report: Report, key: str) -> None:
    """The check's verdict, what to do about it, the cases, the picture and what the code printed."""
    verdict = st.success if report.passed else st.warning if report.stage == "borrowed" else st.error
    verdict(report.title, icon=":material/check_circle:" if report.passed else ":material/error:")
    if report.detail:
        if report.stage in ("compile", "error", "load") or report.detail.startswith("line "):
            st.code(report.detail, language="text")
        else:
            for line in report.detail.splitlines():
                st.caption(line)
    if report.minitx_use:
        st.caption(f":material/info: {report.minitx_use}")
    if report.cases:
        rows = [{"case": c["case"], "result": c["result"], "largest difference": "—" if c["largest difference"]
                 is None else f"{c['largest difference']:.1e}"} for c in report.cases]
        static_table(pd.DataFrame(rows), width="stretch")
    draw_picture(report.picture, key)
    if report.output:
        with st.expander("What your code printed"):
            st.code(report.output, language="text")


# -- on the concept pages ------------------------------------------------------------------

def use_my_code(name: str) -> str | None:
    """The "use my code" switch of one lab on its concept page: the learner's passed file when it
    is on, else None. Before the lab has passed, a link to write it."""
    lab = get_lab(name)
    if code_refusal():
        return None
    source = lab_book().passed_source(name)
    if source is None:
        st.page_link(BUILD_PAGE, label=f"Write `{lab.function}` yourself, then draw this page with it",
                     icon=":material/edit:", query_params={"lab": name})
        return None
    on = st.toggle(f"use my `{lab.function}`", key=f"use_mine_{name}",
                   help=f"Your {lab.name}.py passed its checks; it runs in a separate process, not in the server.")
    return source if on else None


def mine_caption(name: str) -> None:
    lab = get_lab(name)
    st.caption(f":material/person: Drawn with **your** `{lab.function}` ({lab_book().path(name)}), run in a "
               f"separate process.")


def model_spec(run, cfg) -> dict:
    """What a demo loads: the trained run's folder, or the config and seed of ui.resources.random_model."""
    return {"checkpoint": str(run.path)} if run is not None else {"config": cfg.to_dict(), "seed": 0}


def show_in_model(name: str, result: dict, tokenizer, prompt_ids: list[int], what: str) -> None:
    """The real model with minitx's function and with the learner's: same prediction or text?"""
    st.markdown(f"**In the real model** ({what}): the same input through every layer, once with minitx's "
                f"`{get_lab(name).function}` and once with yours.")
    mine_caption(name)
    c1, c2 = st.columns(2)
    c1.metric("largest |logit difference|", f"{result['largest_difference']:.2e}",
              help="Over every logit of every position: float rounding is about 1e-6.")
    if result["task"] == "lm":
        ours = tokenizer.decode(prompt_ids + result["new_ids_ours"])
        yours = tokenizer.decode(prompt_ids + result["new_ids_yours"])
        same = result["new_ids_ours"] == result["new_ids_yours"]
        c2.metric("greedy text", "the same" if same else "different")
        static_table(pd.DataFrame([{"with": "minitx's", "writes": ours}, {"with": "yours", "writes": yours}]),
                     width="stretch")
    else:
        p_ours, p_yours = float(result["probabilities_ours"][-1]), float(result["probabilities_yours"][-1])
        c2.metric("P(positive), yours", f"{p_yours:.1%}", delta=f"{(p_yours - p_ours) * 100:+.2f} points vs minitx's",
                  delta_color="off")
    if result.get("experts_ours"):
        same = all(torch.equal(a, b) for a, b in zip(result["experts_ours"], result["experts_yours"]))
        st.caption(f"Each token's first expert, every layer: {'the same' if same else 'different'} with yours "
                   f"({' | '.join(' '.join(map(str, e.tolist())) for e in result['experts_yours'])}).")
    T = result["attention_ours"].size(-1)
    labels = [str(t) for t in range(T)]
    draw_picture({"kind": "heatmap", "title": "last layer, head 0: minitx's weights and yours",
                  "target": result["attention_ours"][0].tolist(), "yours": result["attention_yours"][0].tolist(),
                  "rows": labels, "cols": labels, "row_title": "query token", "col_title": "key token"},
                 key=f"in-model-{name}")


def demo_model(task: str, cfg, **needs):
    """The model a demo runs: the newest trained run of this task if it has what the lab replaces
    (needs: config fields, e.g. pos_encoding="rope"), else random weights of the sidebar's shape with
    them. Returns (model spec, tokenizer, words for the page), or (None, None, why not)."""
    from ui.resources import newest_run, playground_tokenizer, trained_tokenizer

    run, _ = newest_run(task)
    if run is not None and all(getattr(run.model_config, k) == v for k, v in needs.items()):
        return model_spec(run, None), run.tokenizer, f"run {run.path.name}"
    tokenizer = trained_tokenizer("bpe", 2_000, False, eos=True) if task == "lm" else playground_tokenizer()[0]
    if tokenizer is None:
        return None, None, "no tokenizer: set MINITX_IMDB to a local copy of IMDB, or go online"
    shape = cfg.replace(task=task, vocab_size=tokenizer.vocab_size, dropout=0.0, **needs)
    why = "random weights of the sidebar's model" + (f", with {', '.join(f'{k} {v}' for k, v in needs.items())}"
                                                    if needs else "")
    return model_spec(None, shape), tokenizer, why


def in_model_section(name: str, source: str, task: str, cfg, text: str, others: dict[str, str] | None = None,
                     **needs) -> None:
    """A review (classifier) or a prompt (language model) through the real model with minitx's
    function and with the learner's, side by side."""
    from minitx.generate import prompt_ids
    from ui.resources import sentence_ids

    spec, tokenizer, what = demo_model(task, cfg, **needs)
    if spec is None:
        st.warning(f"Cannot run the model: {what}.")
        return
    if task == "lm":
        ids = prompt_ids(tokenizer, text)[:48]
    else:
        ids = sentence_ids(text, 24, tokenizer)[0] or sentence_ids("A film.", 24, tokenizer)[0]
    result, problem = run_demo(name, source, {"kind": "model", "model": spec, "ids": ids, "new_tokens": 20,
                                              "eos_id": getattr(tokenizer, "eos_id", None)}, others)
    if problem:
        st.error(f"Your code could not run in the model: {problem}")
        return
    show_in_model(name, result, tokenizer, ids, what)


def generation_section(name: str, source: str, spec: dict, tokenizer, prompt_ids: list[int], settings: dict) -> None:
    """The page's generation (prompt, settings, seed) with minitx's function and with the learner's."""
    result, problem = run_demo(name, source, {"kind": "generate", "model": spec, "ids": prompt_ids,
                                              "eos_id": tokenizer.eos_id, **settings})
    if problem:
        st.error(f"Your code could not generate: {problem}")
        return
    same = result["new_ids_ours"] == result["new_ids_yours"]
    mine_caption(name)
    st.markdown(f"**The same generation with your `{get_lab(name).function}`**: "
                f"{'the same text' if same else 'a different text'}, same seed and settings"
                f" (at most {len(result['new_ids_ours'])} new tokens).")
    static_table(pd.DataFrame([{"with": "minitx's", "writes": tokenizer.decode(prompt_ids + result["new_ids_ours"])},
                               {"with": "yours", "writes": tokenizer.decode(prompt_ids + result["new_ids_yours"])}]),
                 width="stretch")


def try_in_smollm2(name: str, source: str, question: str, max_new_tokens: int) -> Answer:
    """SmolLM2 (the server's, ui.models) answering the question with minitx's function and with the
    learner's, each a job of its own forked from one process that holds the model: the worker's answer."""
    model, problem = pretrained()
    if model is None:
        return Answer(Verdict(Kind.NOT_STARTED, {"why": f": {problem}"}))
    with st.spinner("Running SmolLM2 twice, with minitx's function and with yours (the first time, the sandbox "
                    "loads the model)..."):
        return lab_worker().request({"op": "try", "lab": name, "source": source, "model": str(model.source),
                                     "ids": try_ids(model, question, max_new_tokens),
                                     "max_new_tokens": max_new_tokens}, wall_seconds=2 * TRY_LIMITS.wall_seconds + 60)


def show_try(answer: Answer, function: str) -> None:
    """What SmolLM2 wrote with minitx's function and with the learner's, and how far their logits are."""
    if not answer.verdict.ok:
        st.error(f"SmolLM2 could not run: {answer.verdict.message}")
        return
    result, text = answer.result, pretrained()[0].tokenizer.decode
    rows = [{"with": f"minitx's {function}", "SmolLM2 writes": text(result["ours"])}]
    if "problem" in result:
        st.error(f"With your {function} the model did not run to the end: {result['problem']}")
    else:
        rows.append({"with": f"your {function}", "SmolLM2 writes": text(result["yours"])})
    static_table(pd.DataFrame(rows), width="stretch")
    if "problem" not in result:
        same = result["same"]
        st.metric("largest difference of the logits after the question", f"{result['largest_difference']:.2e}")
        (st.success if same else st.warning)(
            "The same answer, token for token." if same else
            "A different answer: your function changes what the model computes (see the logit difference).")
    if answer.output:
        with st.expander("what your code printed"):
            st.code(answer.output, language=None)
