"""Page 8: quantization. Weights as a GGUF file stores them, what fewer bits cost in quality, and what they buy
in speed."""

import math

import altair as alt
import pandas as pd
import streamlit as st
import torch

from minitx.fast_decode import FastDecoder, supports
from minitx.generate import generate
from minitx.quant import study
from minitx.quant.blocks import FORMATS, Quantized, quantize
from minitx.quant.kernels import Int4Matrix, int4_unavailable
from minitx.quant.stored import StoredCausalLM
from minitx.labs import get_lab
from ui import tour
from ui.charts import tips
from ui.common import check_yourself, show_source, static_table
from ui.labs import call_learner, mine_caption, use_my_code
from ui.model_sidebar import model_sidebar
from ui.models import model_choice
from ui.models import pretrained as float_pretrained
from ui.resources import imdb_test_sample, newest_run

MATRICES = {"attn_q": "attention.q_proj", "attn_k": "attention.k_proj", "attn_v": "attention.v_proj",
            "attn_output": "attention.out_proj", "ffn_gate": "feed_forward.gate", "ffn_up": "feed_forward.up",
            "ffn_down": "feed_forward.down"}
PROMPT = "This movie was"


@st.cache_data(show_spinner="Reading the file's tensor types...", max_entries=2)
def file_types(path: str) -> dict[str, str]:
    return study.tensor_types(path)


@st.cache_data(show_spinner="Reading the matrix from the file...", max_entries=8)
def file_tensor(path: str, name: str):
    return study.stored_tensor(path, name)


@st.cache_data(show_spinner="Measuring memory bandwidth...", max_entries=1)
def bandwidth() -> float:
    return study.read_bandwidth()


@st.cache_data(show_spinner="Quantizing the model to every format, then measuring each (seconds per format)...",
               max_entries=4)
def measured(_model, _tokenizer, model_key: str, texts: tuple[str, ...], matrix: str, prompt: str, tokens: int,
             formats: tuple[str, ...], _engine=None):
    """For each format: the chosen matrix's errors, the model's quality on the texts, a greedy continuation,
    tokens/s and bytes per token. Keyed by model_key and the settings; _engine: the float model's own."""
    cfg = _model.cfg
    encoded = [(_tokenizer.start_ids + _tokenizer.encode(t).ids)[:min(cfg.max_len, 128)] for t in texts]
    chars = sum(len(_tokenizer.decode(ids[1:] if _tokenizer.start_ids else ids)) for ids in encoded)
    prompt_ids = (_tokenizer.start_ids + _tokenizer.encode(prompt).ids) or _tokenizer.encode(" ").ids
    weight = _model.state_dict()[matrix].float()
    rows, errors = [], {}
    for name in ("F32", *formats):
        matrices = None if name == "F32" else study.quantized_matrices(_model, name)
        copy = _model if name == "F32" else study.quantized_copy(_model, name, matrices)
        nats, count = study.text_loss(copy, encoded)
        if name == "F32":
            why = supports(_model)
            engine = None if why else _engine or FastDecoder(_model)
            model, runs = _model, "float32 products" if engine else f"float32, its own forward ({why})"
        else:
            if matrix in matrices:
                errors[name] = (matrices[matrix].dequantize() - weight).flatten()
            model, engine, runs = study.engine_for(_model, name, matrices)
        out = generate(model, prompt_ids, tokens, temperature=0, n_top=0, engine=engine)   # as the format runs
        text, speed = _tokenizer.decode(out.new_ids), out.decode_tokens_per_second
        bits = 32 if name == "F32" else FORMATS[name].bits_per_weight
        rows.append({"format": name, "bits per weight": bits, "perplexity": math.exp(nats / count),
                     "bits per character": nats / math.log(2) / chars, "continuation": text,
                     "tokens/s": speed, "bytes read per token": study.bytes_per_token(engine, model), "runs as": runs})
    return pd.DataFrame(rows), errors


def draw_blocks(q: Quantized, row: int) -> None:
    """A row's first two blocks as stored: d (and m), the 32 codes, and the values they stand for."""
    formula = "d × q + m" if q.format.with_minimum else f"d × (q − {q.format.offset})" if q.format.offset else "d × q"
    for block in study.block_rows(q, row, 2):
        scale = f"d = {block['d']:.6g}" + (f", m = {block['m']:.6g}" if block["m"] is not None else "")
        st.markdown(f"**Block {block['block']}** of row {row} ({scale}; value = {formula})")
        frame = pd.DataFrame({"position": range(len(block["codes"])), "code q": block["codes"],
                              "value": block["values"]})
        chart = alt.Chart(frame).mark_bar().encode(
            x=alt.X("position:O"), y=alt.Y("value:Q"), color=alt.Color("code q:Q", scale=alt.Scale(scheme="viridis")),
            tooltip=tips("position", "code q") + [alt.Tooltip("value:Q", format=".5f")]).properties(height=160)
        st.altair_chart(chart, key=f"q_block_{block['block']}")
        st.caption("codes: " + " ".join(str(c) for c in block["codes"]))


model_sidebar()
st.title("Quantization")
tour.panel("quantization")
st.markdown(
    "A weight does not need 32 bits. **Block quantization** cuts each row of a matrix into blocks of 32 "
    "weights and keeps, per block, one or two float16 numbers (a scale *d*, a minimum *m*) and 32 small "
    "integers (*codes*): Q4_1 stores w ≈ d × q + m with q in 0..15, so 32 weights take 16 bytes of codes and "
    "4 of scale and minimum, **5 bits a weight** instead of 32. Writing a token reads every weight once, so "
    "fewer bytes are also more speed. This page shows the blocks as a file stores them, what fewer bits cost "
    "in quality, and what they buy in speed.")

choice = model_choice("lm", decoder=True)
run, why_not = newest_run("lm")
pretrained = choice.pretrained
if isinstance(getattr(pretrained, "model", None), StoredCausalLM):
    pretrained, _ = float_pretrained("fp32")
    st.caption("This page quantizes from float32 weights: it draws SmolLM2's float32 model, dequantized from the "
               "same file, beside the blocks the file stores.")
if pretrained is not None:
    model, tokenizer, model_key = pretrained.model, pretrained.tokenizer, f"pretrained:{pretrained.source}"
elif choice.kind == "trained" and run is not None:
    model, tokenizer = run.model, run.tokenizer
    model_key = f"run:{run.path}:{run.path.stat().st_mtime}"
    st.caption(f"Run {run.path.name}: {run.model_config.summary()}.")
else:
    st.info("Quantization needs a model that learnt something: draw **SmolLM2** (sidebar), or train a language "
            "model on **10 · Training** (Language model, quick) or with `python -m minitx.train --preset lm-quick`."
            + (f" ({why_not}.)" if why_not else ""))
    st.stop()
cfg = model.cfg
layer_names = [name for name in study.layer_matrices(model)]

# -- what is stored -----------------------------------------------------------------------------
st.header("What is stored")
c1, c2 = st.columns(2)
layer = c1.slider("layer", 0, cfg.n_layers - 1, 0, key="q_layer") if cfg.n_layers > 1 else 0
matrices = [m for m in MATRICES if f"layers.{layer}.{MATRICES[m]}.weight" in layer_names]
which = c2.selectbox("matrix", matrices, key="q_matrix")
matrix_name = f"layers.{layer}.{MATRICES[which]}.weight"
if pretrained is not None and pretrained.source.suffix == ".gguf":
    types = file_types(str(pretrained.source))
    counts = pd.Series(list(types.values())).value_counts()
    st.markdown(f"**{pretrained.source.name}** holds {len(types)} tensors: "
                + ", ".join(f"{n} in {kind}" for kind, n in counts.items()) + ".")
    stored = file_tensor(str(pretrained.source), f"blk.{layer}.{which}.weight")
else:
    kind = st.radio("format", list(FORMATS), horizontal=True, key="q_format",
                    help="Your model is float32; this is how its matrix would be stored in that format.")
    stored = quantize(model.state_dict()[matrix_name], kind)
if isinstance(stored, Quantized):
    f = stored.format
    st.markdown(f"`{which}` of layer {layer}: {stored.shape[0]} rows of {stored.shape[1]} weights in **{f.name}**: "
                f"{f.bits}-bit codes{' plus a float16 minimum' if f.with_minimum else ''} and a float16 scale per "
                f"32 weights, **{f.bits_per_weight:g} bits per weight**, {stored.nbytes / 1e6:.2f} MB "
                f"(float32: {stored.shape[0] * stored.shape[1] * 4 / 1e6:.2f} MB).")
    draw_blocks(stored, st.number_input("row", 0, stored.shape[0] - 1, 0, key="q_row"))
else:
    st.markdown(f"`{which}` of layer {layer} is stored as plain floats.")
sizes = pd.DataFrame([{"format": name, "bits per weight": f"{study.FLOAT_BITS.get(name) or FORMATS[name].bits_per_weight:g}",
                       "whole model (MB)": f"{study.model_bytes(model, name) / 1e6:,.1f}"}
                      for name in ("F32", "BF16", *study.SHOWN)])
st.markdown("**The whole model** with its matrices and embedding in each format (norms stay float32):")
static_table(sizes)

# -- your quantizer ------------------------------------------------------------------------------
mine = use_my_code("quantize_block")
weight = model.state_dict()[matrix_name].float()
if mine and weight.shape[1] % 32 == 0:
    yours, problem = call_learner("quantize_block", mine, weight.reshape(-1, 32))
    if problem:
        st.warning(problem)
    else:
        mine_caption("quantize_block")
        ours = get_lab("quantize_block").reference(weight.reshape(-1, 32))
        same = torch.ones(ours[0].numel(), dtype=torch.bool)
        for want, got in zip(ours, yours):
            same &= (torch.as_tensor(got) == want).reshape(want.size(0), -1).all(1)
        sample = imdb_test_sample()
        texts = [(tokenizer.start_ids + tokenizer.encode(t).ids)[:min(cfg.max_len, 128)] for t in sample[0][:2]] \
            if sample is not None else []
        losses = {who: study.text_loss(study.with_matrices(model, replaced), texts) for who, replaced in (
            ("float32", {}), ("minitx's Q4_1", {matrix_name: ours[3]}), ("yours", {matrix_name: yours[3]}))}
        st.markdown(f"**Your quantizer** on `{which}` of layer {layer}: {int(same.sum()):,} of {same.numel():,} "
                    f"blocks exactly as minitx (and llama.cpp) store them. The model with this matrix in Q4_1:")
        if texts:
            static_table(pd.DataFrame([{"matrix": who, "perplexity on 2 test reviews": round(math.exp(n / c), 3)}
                                       for who, (n, c) in losses.items()]))

# -- quantize it yourself -------------------------------------------------------------------------
st.header("Quantize it yourself")
st.markdown(
    "Every layer matrix quantized to each format, then measured: the error of each weight of the matrix above, "
    "the model's quality on held-out IMDB test reviews, a greedy continuation, and the speed of writing. "
    "Q3_1 and Q2_1 are minitx's own (3 and 2 bits, block 32) to show where it breaks. The embedding stays "
    "as it is for quality; the speed runs with it in Q8_0, as 4-bit files keep it.")
formats = st.multiselect("formats", study.SHOWN, list(study.SHOWN), key="q_formats",
                         help="Each takes a few seconds on SmolLM2 (quantizing 135 M weights, then running them).")
c1, c2, c3 = st.columns(3)
n_texts = c1.number_input("reviews", 1, 16, 4, key="q_reviews", help="Held-out IMDB test reviews, 128 tokens each.")
tokens = c2.number_input("tokens to time", 8, 128, 32, key="q_tokens")
prompt = c3.text_input("prompt", PROMPT, key="q_prompt", max_chars=500)
sample = imdb_test_sample()
if sample is None:
    st.warning("IMDB is not available: set MINITX_IMDB to a local copy, or go online.")
    st.stop()
if int4_unavailable() is not None:
    st.info(f"{int4_unavailable()}: the 4-bit formats run in float32 here, so their speed is float32's.")
if not formats:
    st.info("Choose at least one format to measure.")
    st.stop()
settings = (model_key, matrix_name, int(n_texts), int(tokens), prompt, tuple(formats))
if st.button("Quantize and measure", key="q_measure", icon=":material/speed:"):
    st.session_state["q_measured"] = settings
if st.session_state.get("q_measured") != settings:
    st.caption("Press the button: each format takes a few seconds on SmolLM2.")
    st.stop()
table, errors = measured(model, tokenizer, model_key, tuple(sample[0][:int(n_texts)]), matrix_name, prompt,
                         int(tokens), tuple(formats), _engine=pretrained.engine if pretrained is not None else None)
quality = "perplexity" if pretrained is not None else "bits per character"
st.altair_chart(alt.Chart(table, title=f"{quality} against bits per weight").mark_line(point=True).encode(
    x=alt.X("bits per weight:Q", scale=alt.Scale(type="log", base=2)), y=alt.Y(f"{quality}:Q"),
    tooltip=tips("format") + [alt.Tooltip(f"{quality}:Q", format=".3f")]).properties(height=260), key="q_quality")
shown = table.assign(**{"bits per weight": table["bits per weight"].map("{:g}".format),
                        quality: table[quality].map("{:.3f}".format), "tokens/s": table["tokens/s"].map("{:.1f}".format),
                        "MB read per token": (table["bytes read per token"] / 1e6).map("{:.1f}".format)})
static_table(shown[["format", "bits per weight", quality, "tokens/s", "MB read per token", "runs as", "continuation"]])
if errors:                       # a matrix whose rows are not whole blocks stays float32: no errors to draw
    histogram = pd.concat([pd.DataFrame({"format": name, "error": e[torch.randperm(e.numel())[:4000]].numpy()})
                           for name, e in errors.items()])
    st.altair_chart(alt.Chart(histogram, title=f"Each weight's error in {which}, layer {layer} (4,000 of them)")
                    .mark_bar(opacity=0.6).encode(x=alt.X("error:Q", bin=alt.Bin(maxbins=60)),
                                                  y=alt.Y("count():Q", stack=None), color="format:N")
                    .properties(height=240), key="q_errors")

# -- what the speed is made of --------------------------------------------------------------------
st.header("What the speed is made of")
gbs = bandwidth()
bound = shown.assign(**{"bound (tokens/s)": (gbs * 1e9 / table["bytes read per token"]).map("{:.1f}".format),
                        "measured share of the bound": (table["tokens/s"] * table["bytes read per token"]
                                                         / (gbs * 1e9)).map("{:.2f}".format)})
st.markdown(f"Writing one token reads every weight once. This machine reads memory at about **{gbs:.1f} GB/s** "
            "(measured just now: a sum over 256 MB), so a format that reads *B* bytes a token can write at most "
            "bandwidth / *B* tokens a second. The rest of a step (attention, norms, Python) is the gap.")
static_table(bound[["format", "MB read per token", "bound (tokens/s)", "tokens/s", "measured share of the bound"]])

show_source(quantize, Quantized.dequantize, Int4Matrix.__call__, study.quantized_copy)
check_yourself(
    "Q4_0 keeps only a scale, Q4_1 a scale and a minimum. For a block whose weights are all between 0.1 and "
    "0.2, which keeps them better, and why?",
    "Q4_1. Q4_0's 16 codes are spread symmetrically around zero (d × (q − 8)), so a block of only positive "
    "weights uses half of them at best; Q4_1 spreads its 16 codes from the block's minimum to its maximum, "
    "a step of (0.2 − 0.1) / 15 instead of about 0.2 / 8.")
