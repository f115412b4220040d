"""The pictures of the guided tours: each one a picture its page already draws, made for the tour's
sentence. One prediction's tour runs on SmolLM2; the playground's tour on the learner's own classifier."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from minitx.attribution import attribute, record
from minitx.contribution_graph import contribution_graph
from minitx.curves import epoch_curves
from minitx.heads import logit_lens, previous_token_score
from minitx.inspect import rope_pair_path
from minitx.predict import predict
from minitx.presets import PRESETS
from ui import charts, generation, results
from ui.common import static_table, token_labels
from ui.models import how_to_get_it, pretrained
from ui.resources import newest_run, playground_tokenizer

MAX_TOUR_TOKENS = 24        # a sentence longer than this is cut (the pictures stay readable)


@st.cache_data(show_spinner="Following the sentence through SmolLM2...", max_entries=8)
def _followed(_model, model_key: str, ids: tuple[int, ...]) -> dict:
    """Everything the tour's pictures show of one sentence, computed once: attention maps, the logit lens,
    the attribution of the prediction and the contribution graph."""
    ids = list(ids)
    recording = record(_model, ids)
    predicted = int(recording.logits[-1].argmax())
    top, probabilities = logit_lens(_model, ids)
    best = recording.logits[-1].softmax(-1).topk(5)
    maps = torch.stack([layer.weights for layer in recording.layers])          # (L, H, T, T): already recorded
    return {"maps": maps, "lens": (top, probabilities), "predicted": predicted,
            "top5": [(int(i), float(p)) for p, i in zip(best.values, best.indices)],
            "probability": float(recording.logits[-1].softmax(-1)[predicted]),
            "attribution": attribute(_model, recording, predicted),
            "edges": contribution_graph(_model, recording).edges(-1, 0.04)}


def _smollm2():
    model, problem = pretrained("fp32")
    if model is None:
        st.warning(how_to_get_it(problem), icon=":material/cloud_off:")
    return model


def _sentence_ids(tokenizer, sentence: str) -> list[int]:
    ids = tokenizer.encode(sentence).ids
    if len(ids) > MAX_TOUR_TOKENS:
        st.caption(f"The tour follows the sentence's first {MAX_TOUR_TOKENS} tokens.")
    return ids[:MAX_TOUR_TOKENS]


def _prediction_pictures(picture: str, sentence: str) -> None:
    loaded = _smollm2()
    if loaded is None:
        return
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = _sentence_ids(tokenizer, sentence)
    if len(ids) < 2:
        st.info("The tour needs a sentence of at least two tokens: type a few words above.")
        return
    names = [generation.label(tokenizer, t) for t in ids]
    labels = token_labels(names)
    if picture == "tokens":
        st.markdown(generation.token_chips(tokenizer, ids), unsafe_allow_html=True)
        return
    if picture == "rows":
        rows = model.embedding.weight.detach()[ids, :24]                                     # (T, 24)
        st.altair_chart(charts.heatmap(rows, labels, [str(d) for d in range(24)], value="value", row_title="token",
                                       col_title="dimension", scheme="redblue", cell=16,
                                       title=f"the first 24 of {model.cfg.d_model} numbers in each token's row"),
                        key="tour_rows")
        return
    if picture == "rope":
        head_dim = model.cfg.head_dim
        pairs = [0, 1, head_dim // 8, head_dim // 2 - 1]
        path = pd.DataFrame(rope_pair_path(head_dim, len(ids), pairs, model.cfg.rope_base))
        st.altair_chart(charts.rope_circle(path, pairs, size=300), key="tour_rope")
        return
    followed = _followed(model, f"pretrained:{loaded.source}", tuple(ids))
    answer = generation.label(tokenizer, followed["predicted"])
    if picture in ("looks back", "copies"):
        maps = followed["maps"]                                                                # (L, H, T, T)
        if picture == "looks back":
            scores = previous_token_score(maps)
            layer, head = divmod(int(scores.argmax()), scores.size(1))
            what = f"the strongest previous-token head ({float(scores[layer, head]):.0%} of its weight one back)"
        else:
            heads = followed["attribution"].heads
            layer, head = divmod(int(heads.argmax()), heads.size(1))
            looked = int(maps[layer, head, -1].argmax())
            what = (f"the head that writes most of {answer!r}; from the last token it looks most at {labels[looked]}")
        st.altair_chart(charts.heatmap(maps[layer, head], labels, labels, value="weight", cell=16,
                                       title=f"layer {layer}, head {head}: {what}"), key="tour_head")
    elif picture == "lens":
        top, probabilities = followed["lens"]
        first = max(0, len(ids) - 6)
        frame = charts.lens_frame(top, probabilities, labels[first:], first, lambda t: generation.label(tokenizer, t))
        st.altair_chart(charts.lens(frame, labels[first:]), key="tour_lens")
    elif picture == "attribution":
        parts = followed["attribution"]
        L, H = parts.heads.shape
        st.altair_chart(charts.contributions(parts.heads, [str(n) for n in range(L)], [str(h) for h in range(H)],
                                             f"each head's part of the logit of {answer!r}", cell=14),
                        key="tour_attribution")
    elif picture == "graph":
        nodes, lines = charts.graph_frames(followed["edges"], labels, model.cfg.n_layers)
        st.altair_chart(charts.contribution_graph(nodes, lines, names, model.cfg.n_layers, height_per_layer=16),
                        key="tour_graph")
    elif picture == "answer":
        static_table(pd.DataFrame([{"next token": repr(generation.label(tokenizer, t)), "probability": f"{p:.1%}"}
                                   for t, p in followed["top5"]]))
        st.caption("The five likeliest next tokens with minitx's attention: yours should give the same.")
    st.caption(f"SmolLM2 predicts {answer!r} after the sentence.")


def _playground_pictures(picture: str, sentence: str) -> None:
    run, why_not = newest_run("classify")
    if picture == "review tokens":
        tokenizer, origin = playground_tokenizer()
        if tokenizer is None:
            st.warning(f"No tokenizer available: {origin}.")
            return
        st.code(" ".join(tokenizer.encode(sentence).tokens[:60]), language=None)
        st.caption(f"Tokenizer: {origin}.")
    elif picture == "preset":
        model_cfg, train_cfg = PRESETS["quick"]
        static_table(pd.DataFrame([{"model": model_cfg.summary(), "tokenizer": train_cfg.tokenizer,
                                    "reviews": f"{train_cfg.train_size:,}", "epochs": train_cfg.epochs}]))
    elif run is None:
        st.info(f"No classifier trained yet ({why_not}): start the quick preset on **10 · Training**, then come "
                "back to this step.")
    elif picture == "curves":
        loss, _ = epoch_curves(run.metrics.get("history") or {})
        if loss:
            st.altair_chart(charts.overlay(pd.DataFrame([{"run": run.path.name, **row} for row in loss]), "smoothed",
                                           f"Training loss of {run.path.name} (smoothed)", "cross-entropy"),
                            key="tour_curves")
        else:
            st.info(f"Run {run.path.name} has no loss curve yet.")
    elif picture == "ask":
        try:
            prediction = predict(run.model, run.tokenizer, sentence, run.train_config.truncation)
        except ValueError as error:
            st.info(str(error))
            return
        st.markdown(f"Run **{run.path.name}**: P(positive) = **{prediction.p_positive:.0%}**")
        st.markdown(results.attribution_chips(prediction.tokens, prediction.attributions), unsafe_allow_html=True)


PLAYGROUND_PICTURES = ("review tokens", "preset", "curves", "ask")


def draw(picture: str, sentence: str) -> None:
    """Draw one of the tours' pictures for this sentence."""
    if picture in PLAYGROUND_PICTURES:
        _playground_pictures(picture, sentence)
    else:
        _prediction_pictures(picture, sentence)
