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
    coded = getattr(tokens, "bits_coded", None)   # entropy-coded size under the checkpoint's prior, if any
    rate = f", {coded:.0f} bits coded ({tokens.bits_raw:.0f} raw)" if coded is not None else ""
    fig.update_layout(title=title or f"{tokens.tokenizer}: {tokens.M} tokens ({h}×{w}), K={tokens.K}{rate}",
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


# ----------------------------------------------------------------------------- §2: the literature map


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "<br>".join(textwrap.wrap(str(text), width)) if text else ""


def timeline_figure(works, families=None, show_review: bool = True) -> go.Figure:
    """§2's literature table as a map: year × tokens per image (log), one colour per method family.

    ``works`` are :class:`museumtok.literature.Work` rows. Works with a single verified token count
    are drawn as filled markers at their corrected year; with ``show_review`` the review's own
    (year, tokens) is drawn as an open marker joined to the corrected one by a dotted line wherever
    the two differ (or where only the review gives a number). Hover shows title, authors, venue,
    arXiv id, the token setting and what the review says against what the paper says.
    """
    from .literature import FAMILIES

    families = list(families) if families else list(FAMILIES)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939"]
    colour = {f: palette[i % len(palette)] for i, f in enumerate(FAMILIES)}
    jitter = {f: (i - len(FAMILIES) / 2) * 0.035 for i, f in enumerate(FAMILIES)}
    # works of one family and year sit side by side, 0.15 year apart, so their labels do not collide
    offset = {}
    for w in works:
        same = [v.key for v in works if v.family == w.family and v.year == w.year]
        offset[w.key] = jitter[w.family] + 0.15 * (same.index(w.key) - (len(same) - 1) / 2)
    fig = go.Figure()
    for fam in families:
        ws = [w for w in works if w.family == fam]
        drawn = [w for w in ws if w.tokens]
        if drawn:
            fig.add_trace(go.Scatter(
                x=[w.year + offset[w.key] for w in drawn], y=[w.tokens for w in drawn], mode="markers+text",
                name=fam, legendgroup=fam, marker={"size": 13, "color": colour[fam], "line": {"width": 1, "color": "white"}},
                text=[w.key for w in drawn], textposition="top center", textfont={"size": 10},
                hovertext=[_work_hover(w) for w in drawn], hoverinfo="text"))
        if not show_review:
            continue
        claimed = [w for w in ws if w.review_tokens and (w.year_wrong or w.tokens_wrong or not w.tokens)]
        for w in claimed:
            rx, ry = (w.review_year or w.year) + offset[w.key], w.review_tokens
            if w.tokens:
                fig.add_trace(go.Scatter(x=[rx, w.year + offset[w.key]], y=[ry, w.tokens], mode="lines",
                                         line={"color": colour[fam], "dash": "dot", "width": 1},
                                         legendgroup=fam, showlegend=False, hoverinfo="skip"))
        if claimed:
            fig.add_trace(go.Scatter(
                x=[(w.review_year or w.year) + offset[w.key] for w in claimed], y=[w.review_tokens for w in claimed],
                mode="markers+text", name=f"{fam} (review's claim)", legendgroup=fam, showlegend=False,
                text=[f"{w.key} (review)" for w in claimed], textposition="bottom center",
                textfont={"size": 9, "color": colour[fam]},
                marker={"size": 11, "color": colour[fam], "symbol": "circle-open", "line": {"width": 2}},
                hovertext=[f"<b>review says</b>: {w.review_tokens} tokens/image"
                           + (f", year {w.review_year}" if w.year_wrong else "") + f"<br>{_wrap(w.review_says)}"
                           + ("" if w.tokens else "<br><i>corrected count unverified</i>") for w in claimed],
                hoverinfo="text"))
    fig.update_yaxes(type="log", title="tokens per image (log scale)")
    fig.update_xaxes(title="year of first release", dtick=1)
    fig.update_layout(title="Image tokens per image across the review's literature "
                            "(filled: checked against the paper; open: the review's claim)",
                      height=520, margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"title": "method family"})
    return fig


def _work_hover(w) -> str:
    return (f"<b>{_wrap(w.title, 60)}</b><br>{w.first_authors}<br>{w.venue}, {w.year}"
            + (f" · arXiv:{w.arxiv}" if w.arxiv else "")
            + f"<br>tokens/image: {_wrap(w.tokens_setting)}"
            + (f"<br>codebook K = {w.codebook}" if w.codebook else "")
            + f"<br><b>review says</b>: {_wrap(w.review_says)}<br><b>paper says</b>: {_wrap(w.paper_says)}"
            + (f"<br><i>{_wrap(w.notes)}</i>" if w.notes else ""))


def errata_arithmetic_figure(errata) -> go.Figure:
    """For every erratum with a numeric check: the review's number next to the recomputed one (log x)."""
    rows = [(e, e.check()) for e in errata]
    rows = [(e, c) for e, c in rows if c is not None and c.review is not None]
    labels = [f"{e.id} ({e.section})" for e, _ in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=[c.review for _, c in rows], orientation="h", name="review says",
                         marker_color="#d62728", hovertext=[_wrap(e.claim) for e, _ in rows], hoverinfo="text+x"))
    fig.add_trace(go.Bar(y=labels, x=[c.value for _, c in rows], orientation="h", name="recomputed",
                         marker_color="#2ca02c", hovertext=[f"{c.expr} = {c.value:.6g}" for _, c in rows],
                         hoverinfo="text"))
    fig.update_xaxes(type="log", title="value (log scale; units as in each claim)")
    fig.update_layout(barmode="group", height=120 + 38 * len(rows), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title="The review's numbers against their recomputation", legend={"orientation": "h"})
    return fig


# ----------------------------------------------------------------------------- curves and codebooks


def lines_figure(series: dict, x_title: str, y_title: str, title: str = "", log_x: bool = False,
                 markers: bool = True, height: int = 380) -> go.Figure:
    """One line per named series; ``series`` maps a name to (xs, ys) or (xs, ys, hover_texts)."""
    fig = go.Figure()
    for name, s in series.items():
        xs, ys = list(s[0]), list(s[1])
        text = list(s[2]) if len(s) > 2 else None
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, text=text, mode="lines+markers" if markers else "lines",
                                 hovertemplate=("%{text}<br>" if text else "") + f"{x_title} %{{x:.4g}}<br>{y_title} %{{y:.4g}}"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=height,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.2})
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def voronoi_figure(z: torch.Tensor, codebook: torch.Tensor, title: str = "", resolution: int = 200) -> go.Figure:
    """2-D points, their codes and the Voronoi cells (each pixel coloured by its nearest code)."""
    from .quantize.lloyd import nearest

    lo = torch.minimum(z.min(0).values, codebook.min(0).values) - 0.3
    hi = torch.maximum(z.max(0).values, codebook.max(0).values) + 0.3
    gx = torch.linspace(float(lo[0]), float(hi[0]), resolution)
    gy = torch.linspace(float(lo[1]), float(hi[1]), resolution)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)  # (R·R, 2)
    cell = nearest(grid, codebook)[0].reshape(resolution, resolution)
    K = codebook.shape[0]
    fig = go.Figure(go.Heatmap(x=gx.numpy(), y=gy.numpy(), z=cell.numpy(), colorscale="Turbo", showscale=False,
                               opacity=0.35, hoverinfo="skip", zmin=0, zmax=max(K - 1, 1)))
    fig.add_trace(go.Scattergl(x=z[:, 0].numpy(), y=z[:, 1].numpy(), mode="markers", name="vectors z",
                               marker={"size": 3, "color": "#333"}))
    fig.add_trace(go.Scatter(x=codebook[:, 0].numpy(), y=codebook[:, 1].numpy(), mode="markers", name="codes e_k",
                             marker={"size": 11, "color": "white", "line": {"width": 2, "color": "black"}, "symbol": "x"}))
    fig.update_layout(title=title, height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.1})
    fig.update_yaxes(scaleanchor="x")
    return fig


def patch_codebook_image(codebook: torch.Tensor, patch: int, columns: int = 32, scale: int = 2) -> Image.Image:
    """A (K, 3·p·p) RGB patch codebook as one mosaic image, most-used order left to right as given."""
    K = codebook.shape[0]
    rows = -(-K // columns)
    tiles = codebook.clamp(0, 1).reshape(K, 3, patch, patch)
    canvas = torch.ones(3, rows * (patch + 1), columns * (patch + 1))
    for k in range(K):
        r, c = divmod(k, columns)
        canvas[:, r * (patch + 1): r * (patch + 1) + patch, c * (patch + 1): c * (patch + 1) + patch] = tiles[k]
    img = Image.fromarray((canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


# ----------------------------------------------------------------------------- §4.3: codebook health


def codebook_usage_figure(counts, title: str | None = None, sort: bool = True) -> go.Figure:
    """How often each of the K codes is used: a bar per code, most used first when ``sort``.

    Used by the app's codebook-health panel and the VQ-VAE notebook. The title reports perplexity
    exp H(p̂) (K under uniform use, 1 under collapse), codes used and dead codes.
    """
    from .metrics import codebook_stats

    c = torch.as_tensor(counts).long().reshape(-1)
    st = codebook_stats(c, len(c), counts=True)
    order = torch.argsort(c, descending=True, stable=True) if sort else torch.arange(len(c))
    y = c[order].numpy()
    x = np.arange(len(c)) if sort else order.numpy()
    hover = [f"code {int(k)}: used {int(v)}×" for k, v in zip(order.tolist(), y.tolist())]
    fig = go.Figure(go.Bar(x=x, y=y, hovertext=hover, hoverinfo="text", marker_color="#1f77b4",
                           marker_line_width=0))
    if st.n:
        fig.add_hline(y=st.n / len(c), line_dash="dot", annotation_text="uniform use",
                      annotation_position="top right")
    fig.update_layout(
        title=title or f"perplexity {st.perplexity:.1f} of K={st.K} · {st.used} codes used · {st.dead} dead",
        xaxis_title="code rank (most used first)" if sort else "code index", yaxis_title="uses",
        bargap=0, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def interact_or_call(**widgets):
    """``ipywidgets.interact`` as a decorator that returns the function itself, so a later cell can
    call it again with other values (which is how executing a notebook checks its callbacks).

    The widgets are real in every mode, headless runs included: the headless hang once worked around
    here (nbclient missing the ``execute_reply`` of a cell whose widgets display output,
    jupyter/nbclient#312) is handled by the client that runs the notebooks, :mod:`museumtok.book`.
    """
    def deco(fn):
        from ipywidgets import interact

        interact(**widgets)(fn)
        return fn

    return deco


# ----------------------------------------------------------------------------- §5.4: resampler attention


def attention_overlay(image: torch.Tensor, amap: torch.Tensor, strength: float = 0.8) -> Image.Image:
    """One latent's attention (h, w) over an image (3, S, S) in [0, 1]: the image dimmed where the
    latent does not look (the map is upsampled with nearest neighbours and scaled to its maximum)."""
    S = image.shape[-1]
    a = torch.nn.functional.interpolate(amap[None, None].float(), size=(S, S), mode="nearest")[0, 0]
    a = a / a.max().clamp_min(1e-12)
    out = image.float() * (1 - strength + strength * a)
    return Image.fromarray((out.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def attention_mosaic(image: torch.Tensor, maps: torch.Tensor, columns: int = 8, scale: int = 2) -> Image.Image:
    """All M attention maps (M, h, w) as overlays on the image (3, S, S), row-major, token 0 top left."""
    tiles = [attention_overlay(image, a) for a in maps]
    S = image.shape[-1]
    rows = -(-len(tiles) // columns)
    canvas = Image.new("RGB", (columns * (S + 2), rows * (S + 2)), "white")
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas.paste(t, (c * (S + 2), r * (S + 2)))
    return canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)


def image_row_figure(panels, height: int = 260) -> go.Figure:
    """Images side by side: ``panels`` is a list of (title, image (3, H, W) in [0, 1])."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
    for j, (_, im) in enumerate(panels):
        fig.add_trace(go.Image(z=(im.detach().clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()), 1, j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    return fig


def partial_tokens_image(decode_indices, k: torch.Tensor, f: int, grey: float = 0.5) -> torch.Tensor:
    """Render a token grid k (h, w) whose still-masked positions are −1 (or ≥ K): decode with those set to 0,
    then paint their f×f patches grey. Returns (3, f·h, f·w) in [0, 1] (MaskGIT's decoding steps, inpainting)."""
    masked = k < 0
    x = decode_indices(k.clamp_min(0)[None])[0].clone()           # (3, f·h, f·w)
    m = masked.repeat_interleave(f, 0).repeat_interleave(f, 1)     # (f·h, f·w)
    x[:, m] = grey
    return x


def reconstruction_panel(original: torch.Tensor, reconstructions: dict, gap: int = 4, scale: int = 1,
                         label_height: int = 14) -> Image.Image:
    """Originals and their reconstructions side by side: one row per image, one titled column per model.

    original (n, 3, H, W) in [0, 1]; ``reconstructions`` maps a column title to an (n, 3, H, W) tensor.
    Nearest-neighbour upscaling by ``scale`` (pixels stay pixels). Returns a PIL image on white.
    """
    from PIL import ImageDraw

    cols = [("original", original)] + list(reconstructions.items())
    n, _, H, W = original.shape
    h, w = H * scale, W * scale
    canvas = Image.new("RGB", (len(cols) * (w + gap) - gap, label_height + n * (h + gap) - gap), "white")
    draw = ImageDraw.Draw(canvas)
    for j, (title, xs) in enumerate(cols):
        if tuple(xs.shape) != tuple(original.shape):
            raise ValueError(f"{title}: shape {tuple(xs.shape)} != original {tuple(original.shape)}")
        draw.text((j * (w + gap) + 2, 1), title, fill="black")
        for i in range(n):
            arr = (xs[i].detach().clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
            tile = Image.fromarray(arr).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (j * (w + gap), label_height + i * (h + gap)))
    return canvas


def tokenizer_reconstructions_png(path, tokenizers=("vqvae-f8-k1024", "vqgan-f8-k1024"), set_name: str = "kodak",
                                  indices=(0, 4, 22), size: int = 96, scale: int = 2) -> Image.Image:
    """Save (and return) :func:`reconstruction_panel` of held-out images of ``set_name`` (centre squares at
    ``size`` px, the images at ``indices``) through each bundled VQ checkpoint's encode → decode.

        python -c "from museumtok.viz import tokenizer_reconstructions_png as f; f('docs/vqgan/reconstructions_kodak.png')"
    """
    from pathlib import Path

    from . import registry
    from .data.dataset import eval_batch

    x, _ = eval_batch(set_name, size, limit=max(indices) + 1)
    x = x[list(indices)]                                            # (n, 3, size, size)
    recons = {}
    with torch.no_grad():
        for name in tokenizers:
            ae = registry.load(name).model                          # the VQ-VAE / VQ-GAN inside the tokenizer
            recons[name] = ae.decode_indices(ae.encode_indices(x))
    img = reconstruction_panel(x, recons, scale=scale)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return img
