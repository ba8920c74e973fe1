"""The app's Tokenize tab (the presenter view): encode the artwork into M tokens, decode, measure, and put
JPEG and WebP at the same bits beside it, with one line of plain words on top.

Pure: plain Python in, plain Python out, unit-tested without Gradio (``tests/test_app_callbacks.py``).
The checks before the work are :func:`museumtok.app.prepare.prepare`'s, the baselines
:func:`museumtok.app.baselines.same_bits`; a bad input returns a message instead of raising, so one
visitor's broken file never takes the app down for the next.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..data.images import tensor_to_pil
from ..llm.budget import ContextBudget
from ..metrics import lpips_available
from ..viz import budget_figure, error_map, token_grid_figure
from .baselines import METRIC_COLUMNS, grouped, metrics_row, same_bits
from .i18n import t as tr
from .prepare import prepare

__all__ = ["METRIC_COLUMNS", "TokenizeResult", "tokenize_image", "unigram_note", "notes_markdown"]

DISPLAY_SIDE = 512      # pictures are upscaled (nearest neighbour, whole factors) to about this for the screen


@dataclass
class TokenizeResult:
    error: str | None = None
    original: Image.Image | None = None        # the working crop the tokenizer saw
    reconstruction: Image.Image | None = None
    error_image: Image.Image | None = None
    grid: Any = None                           # plotly figure
    budget: Any = None                         # plotly figure
    metrics: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tokens: Any = None                         # the TokenizedImage
    comparisons: dict[str, Image.Image] = field(default_factory=dict)
    headline: str = ""                         # the numbers that matter, in one line of plain words
    shown: dict[str, Image.Image] = field(default_factory=dict)   # original / recon / jpeg / webp upscaled for display
    scale: int = 1                             # display upscaling factor of ``shown``

    def metrics_rows(self) -> list[list]:
        return [[r.get(c, "") for c in METRIC_COLUMNS] for r in self.metrics]


def upscale(img: Image.Image, side: int = DISPLAY_SIDE) -> tuple[Image.Image, int]:
    """Nearest-neighbour upscaling by a whole factor so a small working image fills a screen; (image, factor)."""
    k = max(1, side // max(img.size))
    return (img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST) if k > 1 else img), k


def tokenize_image(
    source,
    tokenizer: str,
    M: int | None = None,
    context: int = 4096,
    text_tokens: int = 200,
    compare: bool = True,
    lang: str = "en",
    progress=None,
) -> TokenizeResult:
    """Encode, decode and measure one image; compare with JPEG and WebP at the same bits.
    ``progress(fraction, text)`` is told what is happening (the app passes ``gr.Progress``)."""
    say = progress or (lambda f, d: None)
    p = prepare(source, tokenizer, M, encode=True, lang=lang, progress=say)
    if isinstance(p, str):
        return TokenizeResult(error=p)
    tok, t = p.model, p.tokens
    t0 = time.perf_counter()
    x_hat = tok.decode(t)
    dec_ms = (time.perf_counter() - t0) * 1e3
    x = t.working.x
    h, w = x.shape[-2:]
    res = TokenizeResult(original=tensor_to_pil(x), reconstruction=tensor_to_pil(x_hat), tokens=t,
                         notes=list(p.loaded.notes))
    res.error_image = error_map(x, x_hat)
    res.grid = token_grid_figure(t)
    coded = unigram_note(t)
    res.metrics.append(metrics_row(tokenizer, t.M, t.bits, h, w, x, x_hat, t.encode_ms, dec_ms,
                                   f"raw {t.bits_raw:.0f} bits = {t.M}·log2 {t.K}{coded}"))
    res.shown["original"], res.scale = upscale(res.original)
    res.shown["recon"], _ = upscale(res.reconstruction)
    verdict = ""
    if compare:
        say(0.7, tr("comparing", lang))
        sb = same_bits(x, x_hat, t.bits, lang)
        res.metrics += sb.rows
        res.comparisons = sb.images
        for name, img in sb.images.items():
            res.shown[name], _ = upscale(img, DISPLAY_SIDE // 2)
        res.notes += sb.notes
        verdict = sb.verdict
    # "256 tokens = 2 560 bits. With the same bits WebP gives a worse picture (…)" — the line a board member reads
    if t.bits_coded is not None and round(t.bits_coded) != round(t.bits_raw):
        res.headline = tr("plain_line_coded", lang, M=t.M, bits=grouped(t.bits), raw=grouped(t.bits_raw),
                          verdict=verdict)
    else:
        res.headline = tr("plain_line", lang, M=t.M, bits=grouped(t.bits), verdict=verdict)
    ok, reason = lpips_available()
    if not ok:
        res.notes.append(tr("lpips_na", lang, reason=reason))
    if min(h, w) < 161:
        res.notes.append(f"MS-SSIM at {h} px uses the scales that fit (5 need ≥161 px), weights renormalised.")
    res.notes.append(tr("working_note", lang, W=p.image.size[0], H=p.image.size[1], S=w))
    res.budget = budget_figure(ContextBudget(context=int(context), images=1, M=t.M, text_tokens=int(text_tokens)))
    return res


def unigram_note(t) -> str:
    """", unigram-coded N bits": ``t.bits_coded``, the tokens range-coded under the prior fitted on the
    training split and saved with the checkpoint (§5), or why it is missing."""
    if t.bits_coded is None:
        return (f" (entropy-coded size n/a: {t.tokenizer} has no prior for M={t.M}; "
                f"`museumtok prior fit {t.tokenizer}` writes one)")
    return f", unigram-coded {t.bits_coded:.0f} bits ({t.bits_coded / t.M:.2f} per token)"


def notes_markdown(res: TokenizeResult) -> str:
    if res.error:
        return f"**⚠ {res.error}**"
    return "\n".join(f"- {n}" for n in res.notes)
