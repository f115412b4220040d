"""Page 4: grouped-query attention, from MHA to MQA, both paths side by side."""

import pandas as pd
import streamlit as st
import torch

from minitx.attention import GroupedQueryAttention, explicit_attention, fused_attention, repeat_kv
from minitx.heads import (SCORES, attention_maps, find_heads, first_token_score, induction_score,
                          previous_token_score)
from minitx.inspect import (WELL_KNOWN_MODELS, attention_parameters, gqa_walkthrough,
                            kv_cache_bytes)
from minitx.tokenizer import PAD_ID
from ui import tour
from ui.charts import heatmap
from ui.common import check_yourself, shapes, show_source, static_table, token_labels
from ui.labs import in_model_section, mine_caption, run_demo, use_my_code
from ui.model_sidebar import model_sidebar
from ui.models import model_choice
from ui.resources import playground_tokenizer, random_model, sentence_or_stop

HEAD_TEXT = ("The cat sat on the mat. The dog sat on the log. When the cat saw the dog, the cat ran to the mat "
             "and the dog ran to the log. The cat sat on the")
MAX_PRETRAINED_TOKENS = 48             # a heatmap wider than this stops being readable


def kv_savings(cfg) -> None:
    """Parameters and KV-cache bytes of MHA, this GQA and MQA at cfg's shape, and of well-known models."""
    st.subheader("What sharing keys and values saves")
    seq = st.select_slider("context length for the KV cache", [512, 2048, 4096, 8192, 32768], 4096,
                           key="attention_context")
    rows = []
    for name, g in (("MHA", cfg.n_heads), (f"GQA (this model's, G {cfg.n_kv_heads})", cfg.n_kv_heads), ("MQA", 1)):
        rows.append({"model": f"{name}: D {cfg.d_model}, H {cfg.n_heads}, G {g}, {cfg.n_layers} layer(s)",
                     "attention parameters / layer": f"{attention_parameters(cfg.d_model, cfg.n_heads, g, cfg.bias):,}",
                     "KV cache (fp16, 1 sequence)": f"{kv_cache_bytes(cfg.n_layers, g, cfg.head_dim, seq) / 2**20:,.2f} MiB"})
    for name, m in WELL_KNOWN_MODELS.items():
        head_dim = m["d_model"] // m["n_heads"]
        rows.append({"model": f"{name}: D {m['d_model']}, H {m['n_heads']}, G {m['n_kv_heads']}, {m['n_layers']} layers",
                     "attention parameters / layer": f"{attention_parameters(m['d_model'], m['n_heads'], m['n_kv_heads'], bias=False):,}",
                     "KV cache (fp16, 1 sequence)": f"{kv_cache_bytes(m['n_layers'], m['n_kv_heads'], head_dim, seq) / 2**30:,.2f} GiB"})
    static_table(pd.DataFrame(rows), width="stretch")


@st.cache_data(show_spinner="Running the text through the model...", max_entries=16)
def maps_of(_model, model_key: str, ids: tuple[int, ...]):
    return attention_maps(_model, list(ids))


@st.cache_data(show_spinner="Scoring every head of every layer...", max_entries=8)
def heads_of(_model, model_key: str, ids: tuple[int, ...], low: int):
    return find_heads(_model, list(ids), n_random=50, low=low, high=_model.cfg.vocab_size)


def pretrained_heads(pretrained, text: str) -> None:
    """A pretrained model's heads on the sentence, grouped by the key/value head they share; the head finder."""
    model, tokenizer, cfg = pretrained.model, pretrained.tokenizer, pretrained.model.cfg
    key = str(pretrained.source)
    ids = tokenizer.encode(text).ids
    if len(ids) < 2:
        st.info("Type a sentence of at least two tokens to see the heads at work.")
        return
    if len(ids) > MAX_PRETRAINED_TOKENS:
        st.caption(f"Showing the first {MAX_PRETRAINED_TOKENS} of {len(ids)} tokens, so the pictures stay readable.")
        ids = ids[:MAX_PRETRAINED_TOKENS]
    labels = token_labels([tokenizer.piece(t) for t in ids])
    maps = maps_of(model, key, tuple(ids))                                         # (L, H, T, T)
    layer = st.slider("layer", 1, cfg.n_layers, 1, key="attention_layer")
    st.subheader(f"Layer {layer}: {cfg.n_heads} query heads, {cfg.n_kv_heads} key/value heads")
    st.caption("Trained weights: each head has learnt where to look. Rows are queries, columns keys; each "
               "row sums to 1. The heads in one box read the same keys and values.")
    group = cfg.n_heads // cfg.n_kv_heads
    for g in range(cfg.n_kv_heads):
        heads = list(range(g * group, (g + 1) * group))
        with st.container(border=True):
            st.markdown(f"**KV head {g}** serves query heads {', '.join(map(str, heads))}")
            for start in range(0, len(heads), 3):
                for column, h in zip(st.columns(3), heads[start:start + 3]):
                    column.altair_chart(heatmap(maps[layer - 1, h], labels, labels, value="weight",
                                                title=f"layer {layer}, head {h}", cell=9), key=f"pre-head-{h}")

    st.header("Head finder")
    st.markdown(
        "Three kinds of heads are common in trained language models, and each has a one-number test, "
        "computed here for all "
        f"{cfg.n_layers * cfg.n_heads} heads:\n"
        "- **previous token**: the head looks at the token just before. Score: its mean weight from each "
        "position on the one before. It tells the next layers which token came before this one.\n"
        "- **first token** (an *attention sink*): the head puts its weight on the very first token when "
        "nothing else is worth attending to (the softmax must put the weight somewhere). Score: its mean "
        "weight on position 0.\n"
        "- **induction**: seeing token A, the head looks at what followed A last time, so the model can copy "
        "it: the mechanism of in-context learning (Olsson et al. 2022). Score: on 50 random tokens shown "
        "twice, its mean weight from each token of the repeat on the token after that token's first "
        "occurrence. Random tokens mean nothing, so only copying can find them.")
    source = st.radio("text for the previous-token and first-token scores", ["a prepared text with repeats",
                                                                             "your sentence"],
                      horizontal=True, key="attention_finder_text")
    finder_ids = tokenizer.encode(HEAD_TEXT).ids if source.startswith("a prepared") else ids
    specials = tokenizer.backend.get_added_tokens_decoder()              # {id: token}: none in the random text
    scores = heads_of(model, key, tuple(finder_ids), max(specials, default=-1) + 1)
    columns = st.columns(3)
    heads_axis = [str(h) for h in range(cfg.n_heads)]
    layers_axis = [str(n + 1) for n in range(cfg.n_layers)]
    for column, name in zip(columns, SCORES):
        column.altair_chart(heatmap(scores.by_name(name), layers_axis, heads_axis, value="score", row_title="layer",
                                    col_title="head", title=name, cell=11, domain=(0, 1)),
                            key=f"finder-{name}")
        column.caption("top: " + "; ".join(f"layer {l + 1} head {h} ({v:.2f})" for l, h, v in scores.top(name, 3)))
    options = {f"{name}: layer {l + 1}, head {h} ({v:.2f})": (name, l, h) for name in SCORES
               for l, h, v in scores.top(name, 3)}
    picked = st.selectbox("draw a head", list(options), key="attention_finder_head")
    name, l, h = options[picked]
    shown_ids = scores.induction_ids[:40] if name == "induction" else finder_ids[:MAX_PRETRAINED_TOKENS]
    shown = maps_of(model, key, tuple(shown_ids))[l, h]
    names = token_labels([tokenizer.piece(t) for t in shown_ids])
    st.altair_chart(heatmap(shown, names, names, value="weight", title=f"layer {l + 1}, head {h}", cell=10),
                    key="finder-drawn")
    st.caption("On the random tokens shown twice (the first 40 ids): an induction head's weight sits on a "
               "diagonal shifted back by the repeat's length, minus one." if name == "induction" else
               "On the text the scores came from.")


cfg = model_sidebar()
st.title("Grouped-query attention")
tour.panel("attention")
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
choice = model_choice("classify")
if choice.pretrained is not None:
    pretrained_heads(choice.pretrained, text)
    kv_savings(choice.pretrained.model.cfg)
    show_source(explicit_attention, repeat_kv, find_heads, previous_token_score, first_token_score, induction_score)
    st.stop()
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

kv_savings(cfg)

show_source(explicit_attention, fused_attention, repeat_kv, GroupedQueryAttention)
check_yourself(
    "With d_model 512, 8 query heads and 2 KV heads, what shape does `k_proj`'s output have "
    "for one review of 10 tokens, before it is split into heads? And how many query heads read "
    "each key/value head?",
    "K has G × Dh = 2 × 64 = **128** columns: **[1, 10, 128]**, viewed as [1, 10, 2, 64]. "
    "Each KV head serves H / G = **4** query heads.")
