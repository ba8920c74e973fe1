"""The one rate–distortion plotter: bits per pixel against PSNR (or MS-SSIM), as plotly and as a PNG.

Callers describe what to draw as panels of :class:`Series`; this module decides how it looks, for both
back-ends at once::

    eval.rd     (curves of one set)            ─┐
                                                ├─▶ [Panel(title, [Series ...])] ─▶ rd_plotly ─▶ .html
    eval.bench_report (rows of several sets)   ─┘                                 └▶ rd_png    ─▶ .png

A series' ``style`` says what kind of thing it is; one method keeps one colour across panels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: style -> (plotly Scatter arguments, matplotlib plot arguments)
STYLES: dict[str, tuple[dict, dict]] = {
    # a codec's quality sweep (JPEG, WebP): a thin line through small markers
    "classical": ({"mode": "lines+markers", "marker": {"size": 6}}, {"marker": "o", "ms": 3}),
    # a learned codec's λ ladder: a thick line
    "learned": ({"mode": "lines+markers", "line": {"width": 3}}, {"marker": "s", "lw": 2.5}),
    # a tokenizer at its M values: large markers, no line (rates are not on the same images)
    "tokenizer": ({"mode": "markers", "marker": {"symbol": "diamond", "size": 11}}, {"marker": "D", "ls": "none", "ms": 8}),
    # published numbers: dashed
    "reference": ({"mode": "lines+markers", "line": {"dash": "dash"}}, {"marker": "^", "ls": "--"}),
    # a codec at a tokenizer's bit budget: hollow markers
    "budget": ({"mode": "markers", "marker": {"symbol": "circle-open", "size": 10}},
               {"marker": "o", "ls": "none", "ms": 6, "mfc": "none"}),
    # a codec with one rate: a square
    "point": ({"mode": "markers", "marker": {"symbol": "square", "size": 9}}, {"marker": "s", "ls": "none", "ms": 6}),
    # a codec's quality sweep drawn behind the rest (the bench): dotted
    "sweep": ({"mode": "lines+markers", "line": {"dash": "dot"}, "marker": {"size": 5}},
              {"marker": ".", "ls": ":", "ms": 3, "alpha": 0.55}),
}


@dataclass
class Series:
    name: str                           # legend entry
    x: list[float]                      # bits per pixel
    y: list[float]                      # PSNR dB (or MS-SSIM)
    style: str = "classical"            # a key of STYLES
    text: list[str] = field(default_factory=list)    # hover text per point (plotly)
    labels: list[str] = field(default_factory=list)  # short text written beside each point (PNG), e.g. "M=64"
    colour_key: str | None = None       # series with the same key share a colour (default: the name)


@dataclass
class Panel:
    title: str                          # the subplot's title (e.g. the evaluation set)
    series: list[Series]


def _colours(panels: list[Panel]) -> dict[str, str]:
    """One colour per colour key, the same in the HTML and the PNG: plotly's 10 then Dark24's 24 (the
    matplotlib default cycle has 10, so the eleventh curve of a plot would repeat the first's colour)."""
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.Dark24
    keys = sorted({s.colour_key or s.name for p in panels for s in p.series})
    return {k: palette[i % len(palette)] for i, k in enumerate(keys)}


def rd_plotly(panels: list[Panel], title: str, ylabel: str = "PSNR (dB)", log_x: bool = False,
              x_max: float | None = None, height: int | None = None):
    """A plotly figure, one subplot per panel sharing the y axis; hover shows each point's text."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    colour = _colours(panels)
    fig = make_subplots(rows=1, cols=max(1, len(panels)), subplot_titles=[p.title for p in panels] if len(panels) > 1 else None,
                        shared_yaxes=True)
    shown: set[str] = set()
    for c, panel in enumerate(panels, 1):
        for s in panel.series:
            kw, _ = STYLES[s.style]
            kw = {k: dict(v) if isinstance(v, dict) else v for k, v in kw.items()}
            kw.setdefault("marker", {})["color"] = colour[s.colour_key or s.name]
            if "lines" in kw["mode"]:
                kw.setdefault("line", {})["color"] = kw["marker"]["color"]
            fig.add_trace(go.Scatter(x=s.x, y=s.y, name=s.name, legendgroup=s.name, showlegend=s.name not in shown,
                                     text=s.text or None,
                                     hovertemplate="%{text}<br>" * bool(s.text) + "%{x:.4f} bpp, %{y:.3f}<extra>"
                                     + s.name + "</extra>", **kw), row=1, col=c)
            shown.add(s.name)
        fig.update_xaxes(type="log" if log_x else "linear", title_text="bits per pixel", row=1, col=c)
        if x_max is not None and not log_x:
            fig.update_xaxes(range=[0, x_max], row=1, col=c)
    fig.update_yaxes(title_text=ylabel, row=1, col=1)
    layout = {"title": title, "template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 60, "b": 10}}
    if len(panels) > 1:
        layout["legend"] = {"orientation": "h", "y": -0.25}
    if height:
        layout["height"] = height
    fig.update_layout(**layout)
    return fig


def rd_png(panels: list[Panel], path: Path, title: str, ylabel: str = "PSNR (dB)", log_x: bool = False,
           x_max: float | None = None) -> Path:
    """The same plot as a PNG with matplotlib (no browser or kaleido needed)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(8, 5.5) if n == 1 else (6.5 * n, 5), sharey=True, squeeze=False)
    colour = _colours(panels)
    for ax, panel in zip(axes[0], panels):
        xs = []
        for s in panel.series:
            _, kw = STYLES[s.style]
            c = colour[s.colour_key or s.name]
            ax.plot(s.x, s.y, label=s.name, color=c, **kw)
            for x, y, lab in zip(s.x, s.y, s.labels):
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(7, -3), fontsize=6, color=c)
            xs += list(s.x)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5) if xs and min(xs) / 1.2 <= t <= max(xs) * 1.2]
            if len(ticks) >= 2:        # else keep matplotlib's own log ticks
                ax.set_xticks(ticks)
        elif x_max is not None:
            ax.set_xlim(0, x_max)
        ax.set_xlabel("bits per pixel")
        ax.set_title(panel.title if n > 1 else title)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if n == 1:
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
    else:
        handles, labels = axes[0][0].get_legend_handles_labels()
        seen = dict(zip(labels, handles))
        for ax in axes[0][1:]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        fig.suptitle(title)
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=4, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.18, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


__all__ = ["Series", "Panel", "STYLES", "rd_plotly", "rd_png"]
