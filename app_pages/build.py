"""Page 9: Build it. The learner writes each piece; minitx checks it in a separate process,
draws target / theirs / difference, and then runs the real model with it."""

from __future__ import annotations

import streamlit as st
from code_editor import code_editor

from minitx.labs import LABS, get_lab
from minitx.labs.checking import Report
from minitx.labs.trial import MAX_NEW_TOKENS as TRY_MAX_TOKENS
from minitx.labs.trial import TRY_LABS
from minitx.presets import PRESETS
from minitx.train import default_run_name
from ui import tour
from ui.common import source_code
from ui.access import code_refusal
from ui.labs import SANDBOX_TEXT, check_and_record, lab_book, sandbox_mode, show_report, show_try, try_in_smollm2
from ui.live import registry
from ui.model_sidebar import model_sidebar
from ui.pages import page_file, page_title

STATUS_MARKS = {"passed": ":green[:material/check_circle:]", "failing": ":red[:material/cancel:]",
                "changed": ":orange[:material/edit:]", "new": ":gray[:material/radio_button_unchecked:]"}
TRAIN_PRESETS = {"Quick (about 2 minutes)": "quick", "Tiny (seconds)": "tiny"}
CHECK_BUTTON = [{"name": "Check", "feather": "Play", "primary": True, "hasText": True, "showWithIcon": True,
                 "commands": ["submit"], "alwaysOn": True, "style": {"bottom": "0.46rem", "right": "0.4rem"}}]


def editor_key(name: str) -> str:
    """The editor's key: a new one after "start again", so that it shows the stub."""
    return f"editor_{name}_{st.session_state.get(f'build_version_{name}', 0)}"


def start_again(name: str) -> None:
    lab_book().reset(name)
    st.session_state[f"build_version_{name}"] = st.session_state.get(f"build_version_{name}", 0) + 1
    st.session_state.pop(f"build_report_{name}", None)


def train_with_my_attention(source: str) -> None:
    model_cfg, train_cfg = PRESETS[TRAIN_PRESETS[st.session_state["build_train_preset"]]]
    try:
        registry().start(model_cfg, train_cfg, default_run_name("my-attention"), learner_code={"attention": source})
    except ValueError as error:
        st.session_state["build_train_error"] = f"Not started: {error}"
        return
    st.session_state["build_train_started"] = True


model_sidebar()
st.title("Build it")
tour.panel("build")
st.markdown(
    "Write each piece of the transformer yourself. Every lab is one function with a fixed signature: "
    "minitx runs it on tricky inputs next to its own, tells you precisely what is wrong, and draws "
    "its answer, yours and the difference. Once a lab passes, its page can draw with **your** code, "
    "and your attention can train a model. Your code never runs in the server, and is saved as you "
    "check it.")

refusal = code_refusal()
if refusal:
    st.warning(refusal, icon=":material/lock:")
    st.stop()
mode = sandbox_mode()
st.caption(f"{':material/shield_lock:' if mode == 'isolated' else ':material/shield:'} Sandbox: **{mode}**. "
           f"{SANDBOX_TEXT[mode]}")

book = lab_book()
statuses = book.statuses()
names = [lab.name for lab in LABS]
asked = st.query_params.get("lab")              # a concept page's "write it yourself" link
if asked in names:
    st.session_state["build_lab"] = asked
    del st.query_params["lab"]
passed = sum(status == "passed" for status in statuses.values())
st.progress(passed / len(LABS), text=f"{passed} of {len(LABS)} labs passed")
st.caption("  ·  ".join(f"{STATUS_MARKS[statuses[n]]} {n}" for n in names)
           + f"  ({STATUS_MARKS['passed']} passed, {STATUS_MARKS['failing']} not yet, {STATUS_MARKS['changed']} "
             f"changed since its check, {STATUS_MARKS['new']} not started)")
# the labels stay the same whatever a lab's status: a label that changes loses the selection
name = st.selectbox("lab", names, key="build_lab",
                    format_func=lambda n: f"{n}: {get_lab(n).title} ({page_title(get_lab(n).page)})")
lab = get_lab(name)

st.subheader(lab.title)
st.markdown(lab.task)
st.caption(f"Write `{lab.function}` and press **Check** (or Ctrl+Enter). It is saved in `{book.path(name)}` "
           f"each time you check it; from a terminal: `python -m minitx.labs check {name} {book.path(name)}`.")

report = st.session_state.get(f"build_report_{name}")
# the line the last check points at (a syntax error, an exception, the line of a named mistake), marked in the gutter
marked = [{"row": report["line"] - 1, "column": 0, "type": "error", "text": report["title"]}] \
    if report and not report["passed"] and report.get("line") else []
response = code_editor(book.source(name), lang="python", key=editor_key(name), height=[16, 40],
                       buttons=CHECK_BUTTON, options={"showLineNumbers": True, "tabSize": 4, "useSoftTabs": True},
                       # no scroll margin: with one, Ace draws the line numbers 15 px below their lines
                       props={"enableLiveAutocompletion": False, "enableBasicAutocompletion": False,
                              "enableSnippets": False, "scrollMargin": [0, 0, 0, 0], "annotations": marked})
seen = f"build_seen_{name}"
if response and response.get("type") == "submit" and response.get("id") != st.session_state.get(seen):
    st.session_state[seen] = response.get("id")
    st.session_state[f"build_report_{name}"] = check_and_record(name, response["text"]).to_dict()
    st.rerun()                      # the progress above counts this check too

if report is not None:
    show_report(Report.from_dict(report), key=f"build-{name}")
elif statuses[name] != "new":
    last = book.progress()[name]
    st.info(f"Last check ({last['checked']}): {last['title']}" + (
        " The file has changed since: check it again." if statuses[name] == "changed" else ""))
if statuses[name] == "passed":
    st.page_link(page_file(lab.page), label=f"Use your `{lab.function}` on {page_title(lab.page)}: "
                                            f"switch on \"use my {lab.function}\" there",
                 icon=":material/arrow_forward:")

if name in TRY_LABS:
    st.header(f"SmolLM2 with your {lab.function}")
    st.markdown(f"A real language model, SmolLM2-135M-Instruct (30 layers), with **your** `{lab.function}` in "
                f"place of minitx's in every layer{' and every step' if name in ('kv_step', 'top_p') else ''}: "
                "does it still write the same answer? Yours and minitx's each run in a sandboxed process of their own, "
                "and the two are compared here.")
    left, right = st.columns([3, 1])
    question = left.text_input("ask it", "What is the capital of France?", key="build_try_prompt", max_chars=2_000)
    tokens = right.number_input("new tokens", 1, TRY_MAX_TOKENS, 12, key="build_try_tokens")
    if statuses[name] != "passed":
        st.caption(f"Your `{lab.function}` does not pass yet: run it anyway to see what its mistake does to the "
                   "model's answer.")
    if st.button(f"Run SmolLM2 with your {lab.function}", key=f"build_try_{name}", icon=":material/neurology:"):
        st.session_state[f"build_try_result_{name}"] = try_in_smollm2(name, book.source(name), question, int(tokens))
    shown = st.session_state.get(f"build_try_result_{name}")
    if shown is not None:
        show_try(shown, lab.function)

hints, answer = st.columns(2)
with hints:
    for number, hint in enumerate(lab.hints, 1):
        with st.expander(f"Hint {number}"):
            st.markdown(hint)
with answer:
    if st.toggle("Show minitx's answer", key=f"build_answer_{name}",
                 help="The source of the minitx code your function is held to. Try the hints first."):
        source_code(*lab.answer)
    st.button("Start again from the stub", key=f"build_reset_{name}", on_click=start_again, args=(name,),
              icon=":material/restart_alt:", help=f"Replaces {book.path(name)} with the stub.")

st.header("Train with my attention")
mine = book.passed_source("attention")
if mine is None:
    st.info("Once your `attention` passes, train a sentiment classifier here in which every layer calls "
            "your function instead of minitx's. It trains in the background like any run and is listed on "
            "**11 · Runs & predict** beside minitx's own.", icon=":material/school:")
else:
    st.markdown("A sentiment classifier whose every layer calls **your** `attention`, trained in the sandbox "
                "above. Same data, seed and steps as the preset with minitx's attention: compare the two on "
                "**11 · Runs & predict**.")
    st.radio("preset", list(TRAIN_PRESETS), key="build_train_preset", horizontal=True)
    busy = registry().busy_reason()
    st.button("Train with my attention", type="primary", icon=":material/play_arrow:", disabled=busy is not None,
              help=busy, on_click=train_with_my_attention, args=(mine,), key="build_train")
    if st.session_state.get("build_train_error"):
        st.error(st.session_state.pop("build_train_error"))
    if st.session_state.pop("build_train_started", False):
        st.switch_page(page_file("training"))
