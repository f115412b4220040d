"""Altair charts the pages share. Data in, chart out: no model math here."""

from __future__ import annotations

import altair as alt
import pandas as pd
import torch


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
        tooltip=[row_title, col_title, "row", "column", alt.Tooltip(f"{value}:Q", format=".4f")],
    ).properties(width=alt.Step(cell), height=alt.Step(cell))   # every label shown, cells square


def lines(frame: pd.DataFrame, x: str, y: str, color: str, title: str = "", height: int = 260) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_line().encode(
        x=alt.X(f"{x}:Q"), y=alt.Y(f"{y}:Q"), color=alt.Color(f"{color}:N"),
        tooltip=[x, color, alt.Tooltip(f"{y}:Q", format=".4f")],
    ).properties(height=height)


def bars(frame: pd.DataFrame, x: str, y: str, title: str = "", height: int = 240) -> alt.Chart:
    return alt.Chart(frame, title=title).mark_bar().encode(
        x=alt.X(f"{x}:N", sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=True)), y=alt.Y(f"{y}:Q"),
        tooltip=list(frame.columns),
    ).properties(height=height)
