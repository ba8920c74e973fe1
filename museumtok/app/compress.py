"""The app's "Codecs" tab: a learned codec writes a real bitstream; show its bytes, bpp, the decoded
image, a bits-per-pixel map, and JPEG / WebP at the same bits (:mod:`museumtok.app.baselines`). Pure
functions, unit-tested (``tests/test_app_codecs.py``); the checks before the work are
:func:`museumtok.app.prepare.prepare`'s.

M does not apply to a codec: its rate is set by the checkpoint's λ.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .. import registry
from ..data.images import tensor_to_pil, working_image
from .baselines import metrics_row, same_bits
from .i18n import t as tr
from .prepare import prepare

CODEC_SIZES = (256, 512, 768)


@dataclass
class CodecResult:
    error: str | None = None
    original: Image.Image | None = None
    reconstruction: Image.Image | None = None
    bpp_map: Image.Image | None = None
    metrics: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparisons: dict[str, Image.Image] = field(default_factory=dict)
    nbytes: int = 0
    headline: str = ""                        # the numbers that matter, in plain words

    def metrics_rows(self, columns: list[str]) -> list[list]:
        return [[r.get(c, "") for c in columns] for r in self.metrics]


def codec_choices() -> list[str]:
    """Learned codecs present here: bundled, or published with their weights in the cache (JPEG/WebP are
    the comparisons, not choices)."""
    return [e.name for e in registry.entries("codec") if e.learned and e.available]


def heatmap_image(m: torch.Tensor, cmap: str = "magma") -> Image.Image:
    """(H, W) non-negative map -> a colour PIL image (max of the map = brightest)."""
    import matplotlib

    v = m.double().numpy()
    v = v / v.max() if v.max() > 0 else v
    rgb = matplotlib.colormaps[cmap](v)[..., :3]
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def compress_image(source, codec_name: str, size: int = 512, compare: bool = True, lang: str = "en",
                   progress=None) -> CodecResult:
    """Compress the centre size×size crop with a learned codec; measure; compare at the same bits.
    ``progress(fraction, text)`` is told what is happening (the app passes ``gr.Progress``)."""
    say = progress or (lambda f, d: None)
    if int(size) not in CODEC_SIZES:
        return CodecResult(error=f"size must be one of {CODEC_SIZES}, got {size}")
    p = prepare(source, codec_name, kind="codec", learned=True, lang=lang, progress=say,
                wrong_kind=f"{codec_name} is not a learned codec; choose one of {', '.join(codec_choices())}")
    if isinstance(p, str):
        return CodecResult(error=p)
    codec = p.model
    wi = working_image(p.image, int(size))
    x = wi.x
    h, w = x.shape[-2:]
    say(0.2, tr("compressing", lang))
    enc = codec.timed_compress(x)
    t0 = time.perf_counter()
    x_hat = codec.decompress(enc.data)
    dec_ms = (time.perf_counter() - t0) * 1e3
    res = CodecResult(original=tensor_to_pil(x), reconstruction=tensor_to_pil(x_hat), nbytes=len(enc.data),
                      notes=list(p.loaded.notes))
    a = codec.analyse(x)
    res.bpp_map = heatmap_image(a["bpp_map"][:h, :w])
    res.metrics.append(metrics_row(codec_name, None, enc.bits, h, w, x, x_hat, enc.encode_ms, dec_ms,
                                   f"{len(enc.data)} bytes, real bitstream (λ = {codec.cfg.lmbda})"))
    verdict = ""
    if compare:
        say(0.7, tr("comparing", lang))
        sb = same_bits(x, x_hat, enc.bits, lang)
        res.metrics += sb.rows
        res.comparisons = sb.images
        verdict = sb.verdict
    res.headline = tr("codec_line", lang, codec=codec_name, nbytes=len(enc.data), bpp=f"{enc.bpp:.3f}", S=w,
                      verdict=verdict)
    res.notes.append(f"{codec_name}: {len(enc.data)} bytes = {enc.bpp:.3f} bits per pixel for a {w}×{h} centre crop; "
                     "the map shows where the bits go (brighter = more bits)")
    return res


def codec_notes_markdown(res: CodecResult) -> str:
    if res.error:
        return f"**⚠ {res.error}**"
    return "\n".join(f"- {n}" for n in res.notes)
