"""The Runs page's "Take your model with you": a language model's exports to download, and the same model
loaded by transformers beside minitx ("Same as transformers?")."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from minitx.export import GGUF_TYPES, export_problem
from minitx.export.archive import export_archive
from minitx.export.same_as_transformers import compare, in_transformers, transformers_missing
from ui import generation
from ui.common import static_table
from ui.models import how_to_get_it, pretrained

COMPARED_TOKENS = 16        # each model's greedy continuation
MAX_TEXT_TOKENS = 64


@st.cache_data(show_spinner="Writing the export...", max_entries=8)
def exported(path: str, modified: float, to: str, kind: str) -> tuple[bytes, str]:
    return export_archive(path, to, kind)


@st.cache_resource(show_spinner="Writing the model as a Hugging Face folder and loading it with transformers...",
                   max_entries=2)
def transformers_twin(_model, _tokenizer, key: str, name: str):
    return in_transformers(_model, _tokenizer, name)


def downloads(run, path: str, modified: float) -> None:
    problem = export_problem(run.model_config, run.tokenizer, "hf")
    if problem:
        st.info(f"This run does not export: {problem}")
        return
    name = run.path.name
    left, right = st.columns(2)
    data, file_name = exported(path, modified, "hf", "f32")
    left.download_button(f"Hugging Face folder (.zip, {len(data) / 1e6:,.2f} MB)", data=data, file_name=file_name,
                         mime="application/zip", key="export_hf", icon=":material/download:", on_click="ignore")
    kind = right.selectbox("GGUF type", GGUF_TYPES, key="export_type",
                           help="f32 keeps every weight; bf16 half the bytes; q8_0, q4_1 and q4_0 are GGML's blocks "
                                "of 32 weights (8.5, 5 and 4.5 bits a weight; see 8 · Quantization)")
    gguf_problem = export_problem(run.model_config, run.tokenizer, "gguf")
    if gguf_problem:
        right.caption(gguf_problem[:1].upper() + gguf_problem[1:])
    else:
        data, file_name = exported(path, modified, "gguf", kind)
        right.download_button(f"GGUF, {kind} ({len(data) / 1e6:,.2f} MB)", data=data, file_name=file_name,
                              mime="application/octet-stream", key="export_gguf", icon=":material/download:",
                              on_click="ignore")
    st.caption(f"The same from a terminal: `python -m minitx.export {name} --to hf {name}-hf` and `python -m "
               f"minitx.export {name} --to gguf {name}.gguf --type q8_0`. transformers reads the folder with "
               f"`AutoModelForCausalLM.from_pretrained`; llama.cpp runs the file: `llama-cli -m {name}.gguf -p "
               f"\"This movie\" -n 40`.")


def same_as_transformers(run, key: str) -> None:
    st.subheader("Same as transformers?")
    st.markdown("Your model written as a Hugging Face folder and loaded by **transformers**, the library most "
                "models run on, beside minitx's: the same text through both, the largest difference of any "
                "logit, the likeliest next tokens and a greedy continuation from each.")
    missing = transformers_missing()
    if missing:
        st.info(f"transformers is not installed here; `{missing}` adds it (pure Python).")
        return
    choices = [f"run {run.path.name}", "SmolLM2-135M-Instruct"]
    which = st.radio("model", choices, key="same_model", horizontal=True)
    if which == choices[0]:
        model, tokenizer, engine, model_key, name = run.model, run.tokenizer, None, key, run.path.name
    else:
        loaded, problem = pretrained("fp32")
        if loaded is None:
            st.warning(how_to_get_it(problem), icon=":material/cloud_off:")
            return
        model, tokenizer, engine = loaded.model, loaded.tokenizer, loaded.engine
        model_key, name = f"pretrained:{loaded.source}", loaded.name
    text = st.text_input("text", "This movie was one of the best I have seen this year, and the acting",
                         key="same_text", max_chars=2_000)
    ids = (tokenizer.start_ids + tokenizer.encode(text).ids)[-min(MAX_TEXT_TOKENS, model.cfg.max_len - COMPARED_TOKENS):]
    if not text.strip() or not ids:
        st.info("Type a text for both models to read.")
        return
    if st.button("Compare with transformers", key="same_compare", icon=":material/compare:"):
        try:
            twin = transformers_twin(model, tokenizer, model_key, name)
            st.session_state["same_result"] = (model_key, tuple(ids), compare(model, twin, ids, COMPARED_TOKENS,
                                                                              engine=engine))
        except ValueError as error:
            st.info(str(error))
    result = st.session_state.get("same_result")
    if not result or result[:2] != (model_key, tuple(ids)):
        return
    found = result[2]
    label = lambda token: repr(generation.label(tokenizer, token))              # noqa: E731
    c1, c2 = st.columns([1, 3])
    c1.metric("largest logit difference", f"{found.largest_difference:.2e}",
              help=f"Over all {len(ids)} positions and {model.cfg.vocab_size:,} tokens; float32 rounding in two "
                   f"libraries' kernels gives about 1e-5. Both runs took {found.seconds:.1f} s.")
    with c2:
        static_table(pd.DataFrame({"minitx": [f"{label(t)} {p:.1%}" for t, p in found.top_minitx],
                                   "transformers": [f"{label(t)} {p:.1%}" for t, p in found.top_transformers]}))
    same = found.continuation_minitx == found.continuation_transformers
    st.markdown(f"**minitx** continues: {tokenizer.decode(found.continuation_minitx)!r}  \n"
                f"**transformers** continues: {tokenizer.decode(found.continuation_transformers)!r}")
    st.caption(f"The same {len(found.continuation_minitx)} greedy tokens." if same else
               "The continuations part where two tokens were nearly tied and rounding tipped one of them.")


def section(run, info) -> None:
    """The whole section for a language model's run."""
    st.header("Take your model with you")
    downloads(run, str(info.path), info.modified)
    same_as_transformers(run, f"run:{info.path}:{info.modified}")
