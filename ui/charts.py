"""Altair charts the pages share. Data in, chart out: no model math here."""

from __future__ import annotations

import functools
import io
import json

import altair as alt
import pandas as pd
import torch


def tips(*fields: str) -> list[alt.Tooltip]:
    """Tooltip channels as Altair objects: Altair checks each shorthand string ("step:Q")
    against the whole Vega-Lite schema, about 4 ms apiece, on every redraw."""
    return [alt.Tooltip(field) for field in fields]


def svg(chart: alt.TopLevelMixin, width: int = 560) -> bytes:
    """The chart as an SVG file, drawn by Altair's own export (vl-convert): Streamlit's chart
    toolbar saves PNG only. Drawn `width` pixels wide: on the page it stretches to its column."""
    buffer = io.StringIO()
    chart.properties(width=width).save(buffer, format="svg")
    return buffer.getvalue().encode()


def heatmap(matrix: torch.Tensor, rows: list[str], cols: list[str], value: str = "value",
            row_title: str = "query token", col_title: str = "key token", title: str = "",
            scheme: str = "blues", cell: int = 20, domain: tuple[float, float] | None = None) -> alt.Chart:
    """A (rows x cols) matrix as coloured cells, labels on the axes, values in the tooltips."""
    m = matrix.detach().float().cpu()
    frame = pd.DataFrame([(rows[i], cols[j], i, j, float(m[i, j]))
                          for i in range(m.size(0)) for j in range(m.size(1))],
                         columns=[row_title, col_title, "row", "column", value])
    scale = alt.Scale(scheme=scheme, domain=list(domain)) if domain else alt.Scale(scheme=scheme)
    # token labels must all show; on fine grids (many positions) let Vega thin them out
    axis = alt.Axis(labelOverlap=False) if cell >= 14 else alt.Axis(labelOverlap=True, labelFontSize=9)
    return alt.Chart(frame, title=title).mark_rect().encode(
        x=alt.X(f"{col_title}:O", sort=cols, title=col_title, axis=axis),
        y=alt.Y(f"{row_title}:O", sort=rows, title=row_title, axis=axis),
        color=alt.Color(f"{value}:Q", scale=scale, title=value, legend=alt.Legend(orient="bottom")),
        tooltip=tips(row_title, col_title, "row", "column") + [alt.Tooltip(f"{value}:Q", format=".4f")],
    ).properties(width=alt.Step(cell), height=alt.Step(cell))   # every label shown, cells square


def lines(frame: pd.DataFrame, x: str, y: str, color: str, title: str = "", height: int = 260) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_line().encode(
        x=alt.X(f"{x}:Q"), y=alt.Y(f"{y}:Q"), color=alt.Color(f"{color}:N"),
        tooltip=tips(x, color) + [alt.Tooltip(f"{y}:Q", format=".4f")],
    ).properties(height=height)


# A cell's colour stops at a mid tone, so black text on it keeps a contrast ratio of at least 4.5
# (WCAG AA) whatever its value: the darkest greens of the full scheme hid their token.
READABLE_GREENS = ["#f7fcf5", "#31a354"]


def contrast(foreground: str, background: str) -> float:
    """WCAG's contrast ratio of two "#rrggbb" colours: 1 (none) to 21 (black on white)."""
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def lens(frame: pd.DataFrame, positions: list[str]) -> alt.LayerChart:
    """The logit lens: layers down, positions across, each cell the layer's top next token, as sure as it is
    green; the token in black, readable on every cell."""
    base = alt.Chart(frame).encode(
        x=alt.X("after token:N", sort=positions, axis=alt.Axis(labelAngle=-40, labelLimit=140)),
        y=alt.Y("layer:O", sort="descending"),
        tooltip=tips("layer", "after token", "predicts") + [alt.Tooltip("probability:Q", format=".3f")])
    cells = base.mark_rect().encode(color=alt.Color("probability:Q", scale=alt.Scale(range=READABLE_GREENS,
                                                                                     domain=[0, 1]),
                                                    legend=alt.Legend(orient="bottom")))
    text = base.mark_text(fontSize=10, limit=70, color="black").encode(text="predicts:N")
    return (cells + text).properties(width=alt.Step(78), height=alt.Step(17))


def lens_frame(top: torch.Tensor, probabilities: torch.Tensor, positions: list[str], first: int, label) -> pd.DataFrame:
    """The logit lens's cells: every layer's top token (label(id) -> text) after each position from `first` on.
    top, probabilities: (L, T, k) from minitx.heads.logit_lens; positions: labels of positions first..T-1."""
    return pd.DataFrame([{"layer": layer + 1, "after token": positions[p - first],
                          "predicts": label(int(top[layer, p, 0])), "probability": float(probabilities[layer, p, 0])}
                         for layer in range(top.size(0)) for p in range(first, top.size(1))])


def contributions(matrix: torch.Tensor, rows: list[str], cols: list[str], title: str, cell: int = 18) -> alt.Chart:
    """Signed contributions as cells: blue adds to the logit, red takes from it, white is nothing; the
    scale is symmetric about 0."""
    largest = max(float(matrix.abs().max()), 1e-6)
    return heatmap(matrix, rows, cols, value="contribution", row_title="layer", col_title="head", title=title,
                   scheme="redblue", cell=cell, domain=(-largest, largest))


def signed_bars(values: list[float], labels: list[str], x_title: str, title: str, height: int = 200) -> alt.Chart:
    """One bar per label, blue above 0 and red below: contributions that add and that take away."""
    frame = pd.DataFrame({x_title: labels, "contribution": values,
                          "sign": ["adds" if v >= 0 else "takes away" for v in values]})
    return alt.Chart(frame, title=title).mark_bar().encode(
        x=alt.X(f"{x_title}:N", sort=labels, axis=alt.Axis(labelAngle=0, labelOverlap=True)),
        y=alt.Y("contribution:Q"),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["adds", "takes away"], range=["#2166ac", "#b2182b"]),
                        legend=None),
        tooltip=tips(x_title) + [alt.Tooltip("contribution:Q", format=".4f")]).properties(height=height)


GRAPH_NODE_OFFSETS = {"stream": (0.0, 0.0), "mid": (0.0, 0.5), "ffn": (0.3, 0.75)}   # (x, y) within a layer


def graph_frames(edges: list, names: list[str], n_layers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contribution graph's nodes and edges (minitx.contribution_graph.Edge) placed for drawing: positions
    across, layers up, the vector after attention half a layer above, a feed-forward block beside it."""
    def place(node) -> tuple[float, float]:
        dx, dy = GRAPH_NODE_OFFSETS[node.kind]
        return node.position + dx, node.layer + dy

    def name(node) -> str:
        where = names[node.position]
        if node.kind == "stream":
            return f"the stream at {where} entering layer {node.layer}" if node.layer < n_layers else \
                f"the last vector at {where}"
        return f"{where} after layer {node.layer}'s attention" if node.kind == "mid" else \
            f"layer {node.layer}'s feed-forward block at {where}"

    rows, nodes = [], {}
    for edge in edges:
        (x, y), (x2, y2) = place(edge.source), place(edge.target)
        head = f", mostly head {edge.head} ({edge.head_weight:.2f})" if edge.head is not None else ""
        rows.append({"x": x, "y": y, "x2": x2, "y2": y2, "share": edge.weight, "kind": edge.kind,
                     "label": f"{edge.kind}{head}: {name(edge.source)} → {name(edge.target)}"})
        nodes.update({edge.source: (x, y), edge.target: (x2, y2)})
    return (pd.DataFrame([{"x": x, "y": y, "node": name(node)} for node, (x, y) in nodes.items()],
                         columns=["x", "y", "node"]),
            pd.DataFrame(rows, columns=["x", "y", "x2", "y2", "share", "kind", "label"]))


GRAPH_COLOURS = {"residual": "#9e9e9e", "attention": "#1f77b4", "feed-forward": "#ff7f0e"}


def contribution_graph(nodes: pd.DataFrame, edges: pd.DataFrame, tokens: list[str], n_layers: int,
                       height_per_layer: int = 24) -> alt.LayerChart:
    """Positions across, layers up: each edge a line as wide as its share, coloured by kind. Data: nodes
    (x, y, node), edges (x, y, x2, y2, share, kind, label)."""
    labels = "[" + ",".join(json.dumps(t) for t in tokens) + "][datum.value]"
    x = alt.X("x:Q", title=None, scale=alt.Scale(domain=[-0.5, len(tokens) - 0.5]),
              axis=alt.Axis(values=list(range(len(tokens))), labelExpr=labels, labelAngle=-40, grid=False))
    y = alt.Y("y:Q", title="layer (0: the embeddings)", scale=alt.Scale(domain=[-0.3, n_layers + 0.3]),
              axis=alt.Axis(values=list(range(0, n_layers + 1)), grid=False, labelOverlap=True))
    kinds = list(GRAPH_COLOURS)
    lines = alt.Chart(edges).mark_rule(opacity=0.75).encode(
        x=x, y=y, x2="x2:Q", y2="y2:Q",
        strokeWidth=alt.StrokeWidth("share:Q", scale=alt.Scale(domain=[0, 1], range=[0.5, 7]), legend=None),
        color=alt.Color("kind:N", scale=alt.Scale(domain=kinds, range=[GRAPH_COLOURS[k] for k in kinds]),
                        legend=alt.Legend(orient="bottom", title="edge")),
        tooltip=tips("label") + [alt.Tooltip("share:Q", format=".3f")])
    points = alt.Chart(nodes).mark_circle(size=28, color="#333").encode(x=x, y=y, tooltip=tips("node"))
    return (lines + points).properties(height=max(240, height_per_layer * (n_layers + 1)), width="container")


def rope_circle(path: pd.DataFrame, pairs: list[int], size: int = 360) -> alt.Chart:
    """Where RoPE turns the vector (1, 0) of a few dimension pairs, position by position (rope_pair_path rows)."""
    path = path.assign(pair="pair " + path["pair"].astype(str))
    return alt.Chart(path, title="a pair turns further at every position").mark_line(point=True).encode(
        x=alt.X("x:Q", scale=alt.Scale(domain=[-1.1, 1.1])), y=alt.Y("y:Q", scale=alt.Scale(domain=[-1.1, 1.1])),
        color=alt.Color("pair:N", sort=[f"pair {i}" for i in pairs]), order=alt.Order("position:Q"),
        tooltip=tips("pair", "position") + [alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")],
    ).properties(width=size, height=size)


def schedule(frame: pd.DataFrame, height: int = 200) -> alt.Chart:
    """The learning rate of every step, before a run starts."""
    return alt.Chart(frame, title="learning-rate schedule").mark_line().encode(
        x=alt.X("step:Q"), y=alt.Y("learning rate:Q", axis=alt.Axis(format=".1e")),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("learning rate:Q", format=".2e")],
    ).properties(height=height)


def bars(frame: pd.DataFrame, x: str, y: str, title: str = "", height: int = 240) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_bar().encode(
        x=alt.X(f"{x}:N", sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=True)), y=alt.Y(f"{y}:Q"),
        tooltip=tips(*frame.columns),
    ).properties(height=height)


def paired_bars(labels: list[str], target: list[float], yours: list[float], x_title: str, y_title: str,
                height: int = 200) -> alt.VConcatChart:
    """minitx's value and the learner's side by side for every label, and yours − minitx's below."""
    pairs = pd.DataFrame([{x_title: label, "who": who, y_title: value}
                          for label, t, y in zip(labels, target, yours) for who, value in (("minitx", t), ("yours", y))])
    difference = pd.DataFrame({x_title: labels, "yours − minitx": [y - t for t, y in zip(target, yours)]})
    x = alt.X(f"{x_title}:N", sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=True))
    side_by_side = alt.Chart(pairs).mark_bar().encode(
        x=x, xOffset=alt.XOffset("who:N"), y=alt.Y(f"{y_title}:Q"),
        color=alt.Color("who:N", scale=alt.Scale(domain=["minitx", "yours"], range=["#4c78a8", "#f58518"])),
        tooltip=tips(x_title, "who") + [alt.Tooltip(f"{y_title}:Q", format=".4f")]).properties(height=height)
    apart = alt.Chart(difference).mark_bar(color="#e45756").encode(
        x=x, y=alt.Y("yours − minitx:Q"),
        tooltip=tips(x_title) + [alt.Tooltip("yours − minitx:Q", format=".4f")]).properties(height=height // 2)
    return alt.vconcat(side_by_side, apart)


def _step_axis(total_steps: int | None) -> alt.X:
    scale = alt.Scale(domain=[0, total_steps]) if total_steps else alt.Undefined
    return alt.X("step:Q", title="training step", scale=scale)


def _spec_without_data(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec with its data taken out, to be given new data on every redraw.

    A live chart whose spec never changes is only fed new rows by the browser; a spec
    with the data inside changes every second and is rebuilt from scratch each time.
    """
    spec = chart.to_dict()
    spec.pop("datasets", None)
    spec.pop("data", None)
    for part in spec.get("layer", []):
        part.pop("data", None)
        for layer in part.get("layer", []):
            layer.pop("data", None)
    return spec


LR_GREY = "#888"


def training_loss(total_steps: int | None, height: int = 340) -> alt.LayerChart:
    """Per-step loss, faint, with its moving average on top, and the learning rate (dashed) on an
    axis of its own at the right. Data: loss_curve rows. One view, so it fits its container."""
    x = _step_axis(total_steps)
    raw = alt.Chart().mark_line(opacity=0.25, strokeWidth=1).encode(
        x=x, y=alt.Y("loss:Q", title="cross-entropy"),
        tooltip=tips("step:Q") + [alt.Tooltip("loss:Q", format=".4f")])
    smooth = alt.Chart().mark_line(strokeWidth=2.5).encode(
        x=x, y=alt.Y("smoothed:Q"),
        tooltip=tips("step:Q") + [alt.Tooltip("smoothed:Q", format=".4f")])
    lr = alt.Chart().mark_line(color=LR_GREY, strokeDash=[5, 3], strokeWidth=1.5).encode(
        x=x, y=alt.Y("lr:Q", title="learning rate",
                     axis=alt.Axis(format=".1e", orient="right", titleColor=LR_GREY, labelColor=LR_GREY)),
        tooltip=tips("step:Q") + [alt.Tooltip("lr:Q", format=".2e")])
    title = alt.Title("Training loss (per step, and smoothed)",
                      subtitle="dashed grey: the learning rate, on the right-hand axis")
    return alt.layer(alt.layer(raw, smooth), lr, title=title).resolve_scale(y="independent").properties(
        height=height, width="container")


METRIC_TITLES = {"accuracy": "accuracy", "loss": "loss", "bits_per_char": "bits per character",
                 "perplexity": "perplexity"}


def evaluation(metric: str, total_steps: int | None, height: int = 250) -> alt.Chart:
    """Validation and test loss (or accuracy, or bits per character) at every evaluation.
    Data: eval_curve rows."""
    y_scale = alt.Scale(domain=[0.4, 1.0]) if metric == "accuracy" else alt.Scale(zero=False)
    title = METRIC_TITLES.get(metric, metric)
    return alt.Chart(title=f"Evaluation {title}").transform_filter(alt.datum.metric == metric).mark_line(
        point=True).encode(
        x=_step_axis(total_steps), y=alt.Y("value:Q", title=title, scale=y_scale),
        color=alt.Color("split:N", title="split"),
        tooltip=tips("step:Q", "split:N") + [alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=height, width="container")


@functools.lru_cache(maxsize=32)
def live_training_spec(total_steps: int | None) -> dict:
    """The training loss and learning rate chart without data: feed it loss_curve rows."""
    return _spec_without_data(training_loss(total_steps).properties(
        data=pd.DataFrame(columns=["step", "loss", "smoothed", "lr"])))


@functools.lru_cache(maxsize=32)
def evaluation_spec(metric: str, total_steps: int | None) -> dict:
    """Evaluation accuracy (or loss) of a run: feed it eval_curve rows."""
    return _spec_without_data(evaluation(metric, total_steps).properties(
        data=pd.DataFrame(columns=["step", "split", "metric", "value"])))


def confusion(matrix: list[list[int]], classes: tuple[str, str] = ("negative", "positive")) -> alt.Chart:
    cells = pd.DataFrame([(classes[t], classes[p], n) for t, row in enumerate(matrix)
                          for p, n in enumerate(row)], columns=["true", "predicted", "reviews"])
    base = alt.Chart(cells, title="Confusion matrix (test)").encode(
        x=alt.X("predicted:N", sort=list(classes)), y=alt.Y("true:N", sort=list(classes)))
    rects = base.mark_rect().encode(color=alt.Color("reviews:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                    tooltip=tips("true", "predicted", "reviews"))
    text = base.mark_text(fontSize=16).encode(text=alt.Text("reviews:Q"))
    return (rects + text).properties(width=240, height=200)


def overlay(frame: pd.DataFrame, y: str, title: str, y_title: str, height: int = 260) -> alt.Chart:
    """One line per run against epochs, so runs of different sizes line up. Axis labels have at
    most 2 and 3 decimals: a run stopped after one evaluation is a single point, and Vega labels
    a one-value axis with six (0.284100)."""
    return alt.Chart(frame, title=title).mark_line(point=y != "smoothed").encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format=".2~f")),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False), axis=alt.Axis(format=".3~f")),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        tooltip=tips("run") + [alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip(f"{y}:Q", format=".4f")],
    ).properties(height=height)
