"""Page 5: the encoder stack. Attention, add & norm, feed-forward, add & norm; N times; pool; classify."""

import pandas as pd
import streamlit as st
import torch

from minitx.block import TransformerBlock
from minitx.encoder import SentimentClassifier, mean_pool
from minitx.inspect import parameter_breakdown
from ui import tour
from ui.charts import bars, heatmap
from ui.common import check_yourself, shapes, show_source, token_labels
from ui.labs import in_model_section, use_my_code
from ui.model_sidebar import model_sidebar
from ui.resources import newest_run, playground_tokenizer, random_model, sentence_or_stop

cfg = model_sidebar()
st.title("The encoder stack")
tour.panel("encoder")
st.markdown(
    "One **layer**: every token looks at the others (attention), the result is added to what it "
    "had (**residual**) and normalised; then each token thinks alone in a small MLP (the "
    "**feed-forward** network), again with add & norm. **Post-norm** (the 2017 paper) normalises "
    "after adding; **pre-norm** (most models since) normalises the branch input and leaves the "
    "residual stream raw, which trains more stably when deep. After N layers, the token vectors "
    "are **pooled** into one (mean of the real tokens, or the [CLS] token) and a linear layer "
    "gives one score per class.")

tokenizer, _ = playground_tokenizer()
run, why_not = newest_run()
use_trained = st.toggle("use the newest trained run", value=run is not None, disabled=run is None,
                        key="enc_trained", help=why_not)
if use_trained and run is not None:
    model, tokenizer, model_cfg = run.model, run.tokenizer, run.model_config
    st.caption(f"Run {run.path.name}: its own architecture, not the sidebar's.")
else:
    if tokenizer is None:
        st.warning("No tokenizer available: set MINITX_IMDB to a local copy of IMDB, or go online.")
        st.stop()
    model_cfg = cfg.replace(vocab_size=tokenizer.vocab_size)
    model = random_model(model_cfg)
    st.caption("Random-init weights of the sidebar model" + (
        f" ({why_not}: train one with `python -m minitx.train --preset quick`, under 2 minutes)." if why_not else "."))

parts = parameter_breakdown(model)
frame = pd.DataFrame({"part": list(parts), "parameters": list(parts.values())})
st.altair_chart(bars(frame, "part", "parameters", title=f"{sum(parts.values()):,} parameters"), key="enc_params")

text = st.text_input("A review", "The acting was wooden and the plot made no sense.", key="enc_text")
ids, tokens = sentence_or_stop(text, max_tokens=24, tokenizer=tokenizer)

with torch.no_grad():
    out = model.run(torch.tensor([ids]), need_weights=True)
probability = out.logits.softmax(-1)[0]
c1, c2, c3 = st.columns(3)
c1.metric("logit negative", f"{out.logits[0, 0]:.3f}")
c2.metric("logit positive", f"{out.logits[0, 1]:.3f}")
c3.metric("P(positive)", f"{probability[1]:.1%}")

layer = st.slider("layer", 1, model_cfg.n_layers, model_cfg.n_layers, key="enc_layer") if model_cfg.n_layers > 1 else 1
head = st.slider("head", 0, model_cfg.n_heads - 1, 0, key="enc_head") if model_cfg.n_heads > 1 else 0
labels = token_labels(tokens)
st.altair_chart(heatmap(out.attentions[layer - 1][0, head], labels, labels, value="weight",
                        title=f"layer {layer}, head {head}"), key="enc_attention", width="content")

norms = pd.DataFrame([{"layer": n, "token": labels[t], "norm": float(out.layer_states[n - 1][0, t].norm())}
                      for n in range(1, model_cfg.n_layers + 1) for t in range(len(ids))])
st.altair_chart(bars(norms.groupby("layer", as_index=False)["norm"].mean(), "layer", "norm",
                     title="mean length of the residual stream after each layer"), key="enc_norms")
pooled = pd.DataFrame({"dimension": list(range(out.pooled.size(1))), "value": out.pooled[0].tolist()})
st.altair_chart(bars(pooled, "dimension", "value", title=f"the pooled vector ({model_cfg.pooling})"),
                key="enc_pooled")
shapes({"ids": (1, len(ids)), "each layer's output": tuple(out.layer_states[0].shape),
        "attention weights per layer": tuple(out.attentions[0].shape), "pooled": tuple(out.pooled.shape),
        "logits": tuple(out.logits.shape)})

st.subheader("Your code in this model")
mine = use_my_code("block")
if mine:
    in_model_section("block", mine, "classify", cfg, text, norm_position="pre")
mine = use_my_code("rms_norm")
if mine:
    in_model_section("rms_norm", mine, "lm", cfg, "The acting was", norm="rmsnorm")

show_source(TransformerBlock.forward, mean_pool, SentimentClassifier.run)
check_yourself(
    "Why must mean pooling divide by the number of *real* tokens rather than by T?",
    "Padding fills a short review up to the batch's longest one. Dividing by T would shrink a "
    "short review's pooled vector by how much padding it got, so the same review would be scored "
    "differently depending on its batch. minitx divides by the count of non-pad tokens; a test "
    "checks that appending padding changes nothing.")
