"""Page 6: the decoder. The encoder's block with a causal mask, writing text one token at a time."""

import pandas as pd
import streamlit as st
import torch

from minitx.decoder import CausalLM, LayerCache
from minitx.generate import generate, next_token
from minitx.heads import first_layer_with, logit_lens
from minitx.inspect import (attention_variants, causal_check, expert_load, kv_cache_bytes, kv_cache_sizes,
                            measure_kv_cache)
from minitx.moe import MixtureOfExperts, expert_choices
from ui import charts, generation, tour
from ui.common import check_yourself, shapes, show_source, static_table, token_labels
from ui.labs import generation_section, in_model_section, model_spec, use_my_code
from ui.model_sidebar import model_sidebar
from ui.models import drawn_language_model, model_choice
from ui.resources import newest_run

MAX_SHOWN_TOKENS = 24
TIMED_TOKENS = 24          # a pretrained model's generation without the cache is timed on this many
LENS_POSITIONS = 10        # the logit lens shows the last this many positions


@st.cache_data(show_spinner="Timing generation with and without the cache, for MHA, GQA and MQA...", max_entries=16)
def timed_rows(cfg) -> pd.DataFrame:
    rows = measure_kv_cache(cfg, prompt_tokens=32, new_tokens=min(96, cfg.max_len - 32))
    return pd.DataFrame([{"attention": r.kind, "KV heads G": r.n_kv_heads, "new tokens": r.tokens,
                          "tokens/s with cache": round(r.tokens / r.seconds_with_cache),
                          "tokens/s without": round(r.tokens / r.seconds_without_cache),
                          "speed-up": round(r.speedup, 1)} for r in rows])


@st.cache_data(show_spinner="Reading every layer's prediction...", max_entries=16)
def lensed(_model, model_key: str, ids: tuple[int, ...]):
    return logit_lens(_model, list(ids))


cfg = model_sidebar()
st.title("Decoder & generation")
tour.panel("decoder")
st.markdown(
    "A **decoder** is the encoder's block with one change: a **causal mask**, so each token sees only "
    "itself and the tokens before it. Then every position can be trained at once to predict the token "
    "after it, and the model can **write**: predict a token, append it, predict the next. The output "
    "layer is the embedding table itself (*tied*): a hidden state scores every token by how well it "
    "matches that token's vector. Writing one token at a time would recompute the keys and values of "
    "every earlier token at every step; the **KV cache** keeps them, and grouped-query attention is "
    "what keeps the cache small.")

choice = model_choice("lm", decoder=True)
run, why_not = newest_run("lm")
drawn = drawn_language_model(choice, cfg)
if drawn is None:
    st.warning("No tokenizer available: set MINITX_IMDB to a local copy of IMDB, or go online.")
    st.stop()
pretrained = drawn.pretrained
model, tokenizer, model_cfg, model_key = drawn.model, drawn.tokenizer, drawn.cfg, drawn.key
spec = None if pretrained is not None else model_spec(drawn.run, None if drawn.run is not None else model_cfg)
if drawn.run is not None:
    best = drawn.run.metrics.get("test_bits_per_char")
    st.caption(f"Run {drawn.run.path.name}: {model_cfg.summary()}"
               + (f"; {best:.3f} bits per character on held-out reviews." if best is not None else "."))
elif pretrained is None:
    st.info("Random weights of the sidebar's model: it writes gibberish, but the mask, the cache and the "
            "routing below are real. To see it write, train one: pick **Language model, quick** on "
            "**10 · Training**, or run `python -m minitx.train --preset lm-quick` (a few minutes); or draw "
            "SmolLM2 (sidebar)." + (f" ({why_not}.)" if choice.kind == "trained" and why_not else ""))

# -- generation ------------------------------------------------------------------------------
chat = pretrained.chat if pretrained is not None else None
st.header("Chat" if chat else "Write")
settings = generation.controls("dec", model_cfg.vocab_size, model_cfg.max_len, chat=chat is not None,
                               prompt="What is the capital of France?" if chat else "This movie was")
prompt = settings.pop("prompt")
engine = pretrained.engine if pretrained is not None else None
out = generation.generated(model, tokenizer, model_key + (":chat" if chat else ""), prompt, **settings, _chat=chat,
                           _engine=engine)
if chat:
    st.markdown("**What the model reads**: your message in its chat template, as tokens (the yellow ones are "
                "special tokens, one id each; ↵ is a newline, · a space). It was fine-tuned on conversations "
                "written this way, and answers by continuing the text until it writes `<|im_end|>`.")
    st.markdown(generation.token_chips(tokenizer, out.prompt_ids), unsafe_allow_html=True)
    st.markdown("**Its answer**")
generation.show(tokenizer, prompt, out, settings, key="dec", chat=chat is not None)
for lab_name in ("top_p", "kv_step") if spec is not None else ():
    mine = use_my_code(lab_name)
    if mine:
        generation_section(lab_name, mine, spec, tokenizer, out.prompt_ids, settings)

# -- the causal mask ---------------------------------------------------------------------------
st.header("The causal mask")
ids = out.prompt_ids[-MAX_SHOWN_TOKENS:]
if len(out.prompt_ids) > MAX_SHOWN_TOKENS:
    st.caption(f"Showing the last {MAX_SHOWN_TOKENS} of the prompt's {len(out.prompt_ids)} tokens, so the "
               "pictures stay readable.")
with torch.no_grad():
    attentions = model(torch.tensor([ids]), need_weights=True).attentions
labels = token_labels([generation.label(tokenizer, t) for t in ids])
layer = st.slider("layer", 1, model_cfg.n_layers, 1, key="dec_layer") if model_cfg.n_layers > 1 else 1
columns = st.columns(min(model_cfg.n_heads, 4 if len(ids) <= 12 else 2))     # every label readable
for head in range(model_cfg.n_heads):
    columns[head % len(columns)].altair_chart(
        charts.heatmap(attentions[layer - 1][0, head], labels, labels, value="weight",
                       title=f"layer {layer}, head {head}", cell=14), key=f"dec_attention_{head}", width="content")
st.caption("Each row is a token looking back: everything above the diagonal is empty, because the mask "
           "gives later tokens weight 0. The first token can only look at itself.")
if len(ids) > 1:
    position = st.slider("change every token after position", 0, len(ids) - 2, min(2, len(ids) - 2),
                         key="dec_position") if len(ids) > 2 else 0
    earlier, later = causal_check(model, ids, position)
    c1, c2 = st.columns(2)
    c1.metric(f"largest change of an output at positions 0-{position}", f"{earlier:.2e}")
    c2.metric(f"largest change after position {position}", f"{later:.2e}")
    st.caption("Computed just now: the tokens after the chosen position were replaced by others and the "
               "model run again. Outputs up to that position do not move at all: they never saw what came after.")

mine = use_my_code("causal_mask")
if mine:
    in_model_section("causal_mask", mine, "lm", cfg, prompt)

# -- the KV cache ------------------------------------------------------------------------------
st.header("The KV cache at work")
timed_with, without = out, None
if pretrained is None:
    without = generation.generated(model, tokenizer, model_key, prompt, **settings, use_cache=False)
elif st.toggle("time the answer with and without the cache (a few seconds: without it, every step runs the "
               "whole text through 30 layers again)", key="dec_time_pretrained"):
    timing = {**settings, "max_new_tokens": min(settings["max_new_tokens"], TIMED_TOKENS)}
    timed_with = generation.generated(model, tokenizer, model_key + ":chat", prompt, **timing, _chat=chat,
                                      _engine=engine)
    without = generation.generated(model, tokenizer, model_key + ":chat", prompt, **timing, use_cache=False, _chat=chat)
    st.caption(f"Timed on the first {len(timed_with.new_ids)} tokens of the answer, with and without the cache.")
c1, c2, c3 = st.columns(3)
for column, timed, label in ((c1, timed_with, "with the cache"), (c2, without, "without")):
    if timed is not None:
        column.metric(f"tokens/s {label}", f"{timed.decode_tokens_per_second:,.1f}",
                      help=f"{len(timed.new_ids)} tokens in {timed.seconds * 1000:.0f} ms, timed on this machine; "
                           f"the speed counts the tokens after the first, which the prompt's pass gives "
                           f"({timed.prefill_seconds * 1000:.0f} ms).")
c3.metric("cache size", f"{out.cache_bytes / 1024:,.1f} KiB",
          help="Read from the cache's tensors: K and V, every layer, every position.")
if without is not None:
    same = "the same text" if timed_with.new_ids == without.new_ids else "a different text (rounding tipped a near tie)"
    st.caption(f"The generation above, again without the cache: {same}. Without the cache every step runs the "
               "whole text through the model again; with it, only the newest token. For a small model and a "
               "short text each step costs about the same either way (the fixed cost of a forward pass "
               "dominates); the saving grows with the model and the length of the text.")
length = len(out.prompt_ids) + len(out.new_ids)
shape = model_cfg if pretrained is not None else cfg.replace(task="lm", dropout=0.0, vocab_size=tokenizer.vocab_size)
whose = pretrained.name + "'s shape" if pretrained is not None else "the sidebar's shape"
st.markdown(f"**MHA, GQA and MQA** of {whose}: the cache for this text ({length} tokens), allocated and measured:")
static_table(pd.DataFrame(kv_cache_sizes(shape, length)))
if pretrained is not None:
    long = [{"attention": kind, "KV heads G": g, "at 8,192 tokens (formula)":
             f"{kv_cache_bytes(shape.n_layers, g, shape.head_dim, 8_192, 1, 4) / 2**20:,.0f} MiB"}
            for kind, g in attention_variants(shape).items()]
    static_table(pd.DataFrame(long))
st.caption("Formula, as on the grouped-query attention page: 2 (K and V) x layers x batch x G x tokens x "
           "head size x 4 bytes (float32). MHA keeps H key/value heads, GQA G of them, MQA one: the cache "
           "shrinks H / G times.")
if pretrained is None and st.button("Time all three, with and without the cache", key="dec_time_kinds",
                                    icon=":material/timer:",
             help="Random weights (speed and memory do not depend on what a model learnt): 32 prompt tokens, "
                  "then greedy generation. Takes a few seconds."):
    st.session_state["dec_timed_shape"] = shape
if st.session_state.get("dec_timed_shape") == shape:
    static_table(timed_rows(shape))
    st.caption("The speed-up from caching grows with the length of the text: without it, step t runs all "
               "t tokens through the model again.")
B, G, Dh = 1, model_cfg.n_kv_heads, model_cfg.head_dim
shapes({"K per layer": (B, G, len(out.prompt_ids) + len(out.new_ids), Dh),
        "V per layer": (B, G, len(out.prompt_ids) + len(out.new_ids), Dh),
        "new token's query": (B, model_cfg.n_heads, 1, Dh)},
       legend=f"B batch, G = {G} key/value heads, then tokens, Dh = {Dh}; formula for this text: "
              f"{kv_cache_bytes(model_cfg.n_layers, G, Dh, len(out.prompt_ids) + len(out.new_ids), 1, 4):,} bytes.")

# -- mixture of experts ------------------------------------------------------------------------
st.header("Mixture of experts")
if model_cfg.ffn != "moe":
    st.info("This model's feed-forward layers are dense. Pick **moe** as the sidebar's feed-forward (with "
            "random weights), or train a language model with `--ffn moe`, to see each token's expert.")
else:
    with torch.no_grad():
        model(torch.tensor([ids]))
    choices = expert_choices(model)                     # per layer (1, T, k)
    st.altair_chart(charts.heatmap(torch.tensor([[float(c[0, t, 0]) for t in range(len(ids))] for c in choices]),
                                   [f"layer {n + 1}" for n in range(len(choices))], labels, value="expert",
                                   row_title="layer", col_title="token", title="Each token's first expert",
                                   scheme="category10", cell=22), key="dec_experts")
    load = pd.DataFrame([{"expert": e, "routing choices": n}
                         for e, n in enumerate(expert_load(torch.cat([c.flatten() for c in choices]),
                                                           model_cfg.n_experts))])
    st.altair_chart(charts.bars(load, "expert", "routing choices",
                                title=f"Load per expert: {model_cfg.experts_per_token} of {model_cfg.n_experts} "
                                      f"experts per token, all layers"), key="dec_load")
    st.caption("Training adds the load-balancing loss (Switch Transformer) so that no expert is left idle.")
mine = use_my_code("moe_route")
if mine:
    in_model_section("moe_route", mine, "lm", cfg, prompt, ffn="moe")

# -- the logit lens -----------------------------------------------------------------------------
st.header("Logit lens: what each layer would say")
st.markdown(
    "The residual stream carries each token's vector from layer to layer; only after the last one does the "
    "model read it out, through the final norm and the output head. The **logit lens** reads it out after "
    "every layer instead, as if the model ended there: which token would each layer predict next? Early "
    "layers mostly echo the input; the answer forms in the later ones.")
lens_text = st.text_input("text", "The capital of France is" if pretrained is not None else "This movie was",
                          key="dec_lens_text", max_chars=5_000)
lens_ids = (tokenizer.start_ids + tokenizer.encode(lens_text).ids)[-model_cfg.max_len:]
if not lens_ids:
    st.info("Type some text to see what each layer would predict after it.")
else:
    top, probabilities = lensed(model, model_key, tuple(lens_ids))
    first = max(0, len(lens_ids) - LENS_POSITIONS)
    positions = [f"{p} {generation.label(tokenizer, t)!r}" for p, t in enumerate(lens_ids)][first:]
    rows = charts.lens_frame(top, probabilities, positions, first, lambda t: generation.label(tokenizer, t))
    st.altair_chart(charts.lens(rows, positions), key="dec_lens")
    answer = int(top[-1, -1, 0])
    since = first_layer_with(top, len(lens_ids) - 1, answer)
    st.caption(f"After the whole text the model predicts {generation.label(tokenizer, answer)!r} "
               f"({float(probabilities[-1, -1, 0]):.0%}); it is every layer's top guess from layer {since + 1} "
               f"of {top.size(0)} on. Each cell: the layer's most likely next token and its probability.")
    shapes({"residual stream, every layer": (model_cfg.n_layers, len(lens_ids), model_cfg.d_model),
            "logits, every layer": (model_cfg.n_layers, len(lens_ids), model_cfg.vocab_size)},
           legend="layers, tokens, then D (the model's width) or V (the vocabulary)")

show_source(CausalLM.forward, LayerCache.update, generate, next_token, MixtureOfExperts.forward, logit_lens)
check_yourself(
    "With the cache, why may a generation step give its new token's query to attention alone, "
    "without any mask?",
    "A mask hides keys a query must not see: the ones after it. The newest token is the last one, so every "
    "key in the cache is at or before it; there is nothing to hide. (The prompt, fed in at once, does need "
    "the mask, since its early tokens must not see its later ones.)")
