"""The app's "Codecs" tab: a learned codec writes a real bitstream; show its bytes, bpp, the decoded
image, a bits-per-pixel map, and JPEG / WebP at the same bits. Pure functions, unit-tested.

M does not apply to a codec: its rate is set by the checkpoint's λ.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .. import registry
from ..data.images import ImageLoadError, load_image, tensor_to_pil, working_image
from .callbacks import psnr, bits_to_match, metrics_row, upscale
from .i18n import error_text, t as tr

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
    if source is None or (isinstance(source, str) and not source.strip()):
        return CodecResult(error=tr("need_image", lang))
    try:
        entry = registry.get(codec_name)
    except KeyError as err:
        return CodecResult(error=str(err))
    if entry.kind != "codec" or not entry.learned:
        return CodecResult(error=f"{codec_name} is not a learned codec; choose one of {', '.join(codec_choices())}")
    if int(size) not in CODEC_SIZES:
        return CodecResult(error=f"size must be one of {CODEC_SIZES}, got {size}")
    try:
        loaded = load_image(source)
    except ImageLoadError as err:
        return CodecResult(error=tr("cannot_use", lang, why=error_text(err, lang)))
    try:
        if not registry.is_loaded(codec_name):
            say(0.05, tr("loading_tok", lang, name=codec_name))
        codec = registry.load(codec_name)
    except (registry.CheckpointMissing, FileNotFoundError) as err:
        return CodecResult(error=str(err))
    wi = working_image(loaded.image, int(size))
    x = wi.x
    h, w = x.shape[-2:]
    say(0.2, tr("compressing", lang))
    enc = codec.timed_compress(x)
    t0 = time.perf_counter()
    x_hat = codec.decompress(enc.data)
    dec_ms = (time.perf_counter() - t0) * 1e3
    res = CodecResult(original=tensor_to_pil(x), reconstruction=tensor_to_pil(x_hat), nbytes=len(enc.data),
                      notes=list(loaded.notes))
    a = codec.analyse(x)
    res.bpp_map = heatmap_image(a["bpp_map"][:h, :w])
    res.metrics.append(metrics_row(codec_name, None, enc.bits, h, w, x, x_hat, enc.encode_ms, dec_ms,
                            f"{len(enc.data)} bytes, real bitstream (λ = {codec.cfg.lmbda})"))
    verdict = ""
    if compare:
        say(0.7, tr("comparing", lang))
        for name in ("jpeg", "webp"):
            c = registry.load(name)
            br = c.compress_at_bits(x, enc.bits)
            t0 = time.perf_counter()
            y = c.decompress(br.encoded)
            d_ms = (time.perf_counter() - t0) * 1e3
            res.metrics.append(metrics_row(f"{name} @ same bits", None, br.encoded.bits, h, w, x, y,
                                    br.encoded.encode_ms, d_ms, br.note()))
            res.comparisons[name] = tensor_to_pil(y)
            if name == "webp":
                pt, pc = psnr(x, x_hat), psnr(x, y)
                if not br.fits:
                    verdict = tr("verdict_nofit", lang, codec="WebP", need=f"{br.encoded.bits:,}".replace(",", "\u2009"))
                elif pc < pt:
                    need = bits_to_match(c, x, pt)
                    verdict = tr("verdict_worse", lang, codec="WebP", psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}",
                                 match=tr("verdict_match", lang, codec="WebP", need=f"{need:,}".replace(",", "\u2009"))
                                 if need else "")
                else:
                    verdict = tr("verdict_better", lang, codec="WebP", psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}")
    res.headline = tr("codec_line", lang, codec=codec_name, nbytes=len(enc.data), bpp=f"{enc.bpp:.3f}", S=w,
                      verdict=verdict)
    res.notes.append(f"{codec_name}: {len(enc.data)} bytes = {enc.bpp:.3f} bits per pixel for a {w}×{h} centre crop; "
                     "the map shows where the bits go (brighter = more bits)")
    return res


def codec_notes_markdown(res: CodecResult) -> str:
    if res.error:
        return f"**⚠ {res.error}**"
    return "\n".join(f"- {n}" for n in res.notes)
