"""What a lab draws: minitx's answer and the learner's side by side, as plain lists (a picture
crosses from the sandbox to the page as JSON; the page draws it and their difference).

    {"kind": "heatmap", "title": ..., "target": [[...]], "yours": [[...]], "rows": [...], "cols": [...],
     "row_title": ..., "col_title": ...}
    {"kind": "bars", "title": ..., "labels": [...], "target": [...], "yours": [...], "x_title": ..., "y_title": ...}
    {"kind": "table", "title": ..., "columns": [...], "rows": [[...], ...]}
"""

from __future__ import annotations

import torch

MAX_CELLS = 48        # rows and columns shown at most: a picture to read, not a dump


def heatmap(title: str, target: torch.Tensor, yours: torch.Tensor, row_title: str, col_title: str,
            rows: list[str] | None = None, cols: list[str] | None = None) -> dict:
    """Two matrices of one shape, cut to MAX_CELLS x MAX_CELLS."""
    target, yours = (m.detach().float()[:MAX_CELLS, :MAX_CELLS] for m in (target, yours))
    n_rows, n_cols = target.shape
    return {"kind": "heatmap", "title": title, "target": target.tolist(), "yours": yours.tolist(),
            "rows": (rows or [str(i) for i in range(n_rows)])[:n_rows],
            "cols": (cols or [str(j) for j in range(n_cols)])[:n_cols],
            "row_title": row_title, "col_title": col_title}


def bars(title: str, labels: list[str], target: list[float], yours: list[float], x_title: str,
         y_title: str) -> dict:
    return {"kind": "bars", "title": title, "labels": [str(x) for x in labels][:MAX_CELLS],
            "target": [float(v) for v in target][:MAX_CELLS], "yours": [float(v) for v in yours][:MAX_CELLS],
            "x_title": x_title, "y_title": y_title}


def table(title: str, columns: list[str], rows: list[list]) -> dict:
    return {"kind": "table", "title": title, "columns": columns,
            "rows": [[str(cell) for cell in row] for row in rows[:MAX_CELLS]]}
