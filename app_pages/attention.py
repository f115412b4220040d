"""Page 4: grouped-query attention, from MHA to MQA, both paths side by side."""

import pandas as pd
import streamlit as st
import torch

from minitx.attention import GroupedQueryAttention, explicit_attention, fused_attention, repeat_kv
from minitx.inspect import (WELL_KNOWN_MODELS, attention_parameters, gqa_walkthrough,
                            kv_cache_bytes)
from minitx.tokenizer import PAD_ID
from ui.charts import heatmap
from ui.common import check_yourself, shapes, show_source, static_table, token_labels
from ui.labs import in_model_section, mine_caption, run_demo, use_my_code
from ui.model_sidebar import model_sidebar
from ui.resources import playground_tokenizer, random_model, sentence_or_stop

cfg = model_sidebar()
st.title("Grouped-query attention")
st.markdown(
    "Every token asks a question (**query**), offers a label (**key**) and carries a message "
    "(**value**). Its output is the average of all messages, weighted by how well its query "
    "matches each key: `softmax(Q Kᵀ / √Dh) V`. **Heads** do this several times in parallel on "
    "slices of size Dh = D / H. With **grouped-query attention** several query heads share one "
    "key/value head: G = H is classic multi-head attention (MHA), G = 1 is multi-query "
    "attention (MQA). Fewer KV heads means fewer parameters and a smaller KV cache when "
    "generating text, at little cost in quality. Change D, H and G in the sidebar.")

text = st.text_input("A sentence", "The film was not good, but the music was wonderful.",
                     max_chars=5_000, key="attention_text")
left, right = st.columns(2)
n_pad = left.slider("padding tokens appended", 0, 6, 2, key="attention_pad",
                    help="[PAD] tokens as in a batch of longer reviews; nobody may attend to them.")
causal = right.toggle("causal mask (a decoder's: no peeking at later tokens)", value=False,
                      key="attention_causal")

ids, tokens = sentence_or_stop(text)

tokenizer, _ = playground_tokenizer()
model_cfg = cfg.replace(vocab_size=tokenizer.vocab_size, max_len=max(cfg.max_len, len(ids) + n_pad))
ids_t = torch.tensor([ids + [PAD_ID] * n_pad])                         # (1, T)
labels = token_labels(tokens + ["[PAD]"] * n_pad)
with torch.no_grad():
    x = random_model(model_cfg).embed(ids_t)                            # (1, T, D)
walk = gqa_walkthrough(model_cfg, x, ids_t != PAD_ID, causal=causal)

mine = {name: source for name in ("attention", "repeat_kv") if (source := use_my_code(name))}
weights = walk.weights
if mine:
    first, *rest = mine
    result, problem = run_demo(first, mine[first], {"kind": "heads", "config": model_cfg.to_dict(), "x": x,
                                                     "key_padding_mask": ids_t != PAD_ID, "causal": causal},
                               {other: mine[other] for other in rest})
    if problem:
        st.error(f"Your code could not draw this page: {problem}")
    else:
        weights = result["weights"]
        for name in mine:
            mine_caption(name)
        st.caption(f"Largest difference from minitx's weights: {result['largest_difference']:.2e}.")

st.subheader(f"{cfg.n_heads} query heads, {cfg.n_kv_heads} key/value head(s)")
st.caption("Random-initialised weights: the pattern is arbitrary (and nearly uniform: an "
           "untrained model has no reason to prefer any token), the mechanics are real. Rows are "
           "queries, columns keys; each row sums to 1; the colour scale fits each head. Heads in one "
           "box share K and V. Padding columns stay at 0.")
for g in range(cfg.n_kv_heads):
    heads = [h for h in range(cfg.n_heads) if walk.kv_group_of_head[h] == g]
    with st.container(border=True):
        st.markdown(f"**KV head {g}** serves query head{'s' if len(heads) > 1 else ''} "
                    f"{', '.join(map(str, heads))}")
        for start in range(0, len(heads), 2):            # two heatmaps a row: every label readable
            columns = st.columns(2)
            for column, h in zip(columns, heads[start:start + 2]):
                chart = heatmap(weights[0, h], labels, labels, value="weight", title=f"head {h}")
                column.altair_chart(chart, key=f"head-{h}", width="content")

if mine:
    first, *rest = mine
    in_model_section(first, mine[first], "classify", cfg, text, {other: mine[other] for other in rest})

st.subheader("Both paths agree")
st.metric("max |explicit − fused|", f"{walk.max_difference:.2e}",
          help="explicit: softmax(QKᵀ/√Dh)V written out; fused: F.scaled_dot_product_attention")
st.caption("The explicit path returns the weights drawn above; the fused path is what training "
           "uses, because it is faster. A test holds them equal to 1e-5.")

st.subheader("Shapes")
T = ids_t.size(1)
shapes({**walk.shapes, "x (input)": (1, T, cfg.d_model)},
       "B = 1 review, T tokens, H query heads, G KV heads, Dh head size. "
       f"[1, {T}, {cfg.n_heads}, {cfg.head_dim}] is the queries before the transpose: "
       "batch, tokens, heads, head size.")

st.subheader("What sharing keys and values saves")
seq = st.select_slider("context length for the KV cache", [512, 2048, 4096, 8192, 32768], 4096,
                       key="attention_context")
rows = []
for name, g in (("MHA", cfg.n_heads), ("GQA (yours)", cfg.n_kv_heads), ("MQA", 1)):
    rows.append({"model": f"{name}: D {cfg.d_model}, H {cfg.n_heads}, G {g}, {cfg.n_layers} layer(s)",
                 "attention parameters / layer": f"{attention_parameters(cfg.d_model, cfg.n_heads, g):,}",
                 "KV cache (fp16, 1 sequence)": f"{kv_cache_bytes(cfg.n_layers, g, cfg.head_dim, seq) / 2**20:,.2f} MiB"})
for name, m in WELL_KNOWN_MODELS.items():
    head_dim = m["d_model"] // m["n_heads"]
    rows.append({"model": f"{name}: D {m['d_model']}, H {m['n_heads']}, G {m['n_kv_heads']}, {m['n_layers']} layers",
                 "attention parameters / layer": f"{attention_parameters(m['d_model'], m['n_heads'], m['n_kv_heads'], bias=False):,}",
                 "KV cache (fp16, 1 sequence)": f"{kv_cache_bytes(m['n_layers'], m['n_kv_heads'], head_dim, seq) / 2**30:,.2f} GiB"})
static_table(pd.DataFrame(rows), width="stretch")

show_source(explicit_attention, fused_attention, repeat_kv, GroupedQueryAttention)
check_yourself(
    "With d_model 512, 8 query heads and 2 KV heads, what shape does `k_proj`'s output have "
    "for one review of 10 tokens, before it is split into heads? And how many query heads read "
    "each key/value head?",
    "K has G × Dh = 2 × 64 = **128** columns: **[1, 10, 128]**, viewed as [1, 10, 2, 64]. "
    "Each KV head serves H / G = **4** query heads.")
