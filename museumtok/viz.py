"""Figures shared by the app and the notebooks (plotly), so neither holds drawing code of its own."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from .llm.budget import ContextBudget


def token_grid_figure(tokens, title: str | None = None, highlight: list[int] | None = None) -> go.Figure:
    """The token indices as a heat map; hover shows each token's index and its patch box.

    1-D tokenizers are drawn as a single row. ``highlight`` marks token positions (e.g. citations).
    """
    idx = tokens.indices
    grid = idx if idx.ndim == 2 else idx.reshape(1, -1)
    h, w = grid.shape
    boxes = tokens.boxes.reshape(h, w, 4).tolist()
    text = [[f"token <v{int(grid[i, j])}><br>position {i * w + j}<br>patch x {boxes[i][j][0]}–{boxes[i][j][2]}, "
             f"y {boxes[i][j][1]}–{boxes[i][j][3]}" for j in range(w)] for i in range(h)]
    fig = go.Figure(go.Heatmap(z=grid.numpy(), text=text, hoverinfo="text", colorscale="Viridis",
                               colorbar={"title": "index"}, zmin=0, zmax=tokens.K - 1))
    if highlight:
        ys = [p // w for p in highlight]
        xs = [p % w for p in highlight]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"symbol": "square-open", "size": 14, "color": "red"},
                                 name="cited", hoverinfo="skip"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=h > 1)
    fig.update_layout(title=title or f"{tokens.tokenizer}: {tokens.M} tokens ({h}×{w}), K={tokens.K}",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=360)
    return fig


def error_map(x: torch.Tensor, x_hat: torch.Tensor) -> Image.Image:
    """Per-pixel absolute error (mean over RGB) as a colour image (dark = exact, yellow = large)."""
    import matplotlib

    err = (x - x_hat).abs().mean(0).numpy()
    vmax = max(float(np.percentile(err, 99)), 1e-6)
    rgba = matplotlib.colormaps["inferno"](np.clip(err / vmax, 0, 1))
    return Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))


def budget_figure(b: ContextBudget) -> go.Figure:
    """A horizontal stacked bar: image tokens, text tokens, answer reserve, free (or overflow)."""
    parts = [("image tokens", b.image_tokens, "#1f77b4"), ("text tokens", b.text_tokens, "#ff7f0e")]
    if b.reserve_answer:
        parts.append(("answer reserve", b.reserve_answer, "#9467bd"))
    parts.append(("free", max(b.free, 0), "#d9d9d9") if b.fits else ("overflow", -b.free, "#d62728"))
    fig = go.Figure()
    for name, v, c in parts:
        fig.add_trace(go.Bar(x=[v], y=["context"], orientation="h", name=f"{name} ({v})", marker_color=c))
    fig.add_vline(x=b.context, line_dash="dash", annotation_text=f"window {b.context}")
    fig.update_layout(barmode="stack", height=180, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=b.summary() if len(b.summary()) < 90 else ("fits" if b.fits else "overflow"),
                      legend={"orientation": "h"})
    return fig
