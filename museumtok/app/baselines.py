"""JPEG and WebP at the same bits: the baselines every tab that makes bits compares against (§5, §9.1).

A tokenizer's M·log2 K bits, or a learned codec's real file, are spent again by Pillow's JPEG and WebP
(:meth:`museumtok.codecs.pillow.PillowCodec.compress_at_bits`: the best quality that fits the budget), and
the comparison is told in one line: with the same bits, is WebP's picture worse or better, and how many
bits would WebP need to look as good (:func:`bits_to_match`). PSNR is the judge of that line; the metric
rows (:func:`metrics_row`) carry SSIM, MS-SSIM and LPIPS too. Pure functions, unit-tested through the
Tokenize and Codecs tabs (``tests/test_app_callbacks.py``, ``tests/test_app_codecs.py``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import registry
from ..codecs.pillow import PillowCodec
from ..data.images import tensor_to_pil
from ..eval.metrics import image_metrics
from .i18n import t as tr

METRIC_COLUMNS = ["method", "M", "bits", "bpp", "PSNR dB", "SSIM", "MS-SSIM", "LPIPS", "encode ms", "decode ms", "note"]
BASELINES = ("jpeg", "webp")     # registry names, in table order
VERDICT_CODEC = "webp"           # the baseline the one-line verdict is about (the stronger of the two)


def _fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return round(float(v), nd)


def grouped(n: float) -> str:
    """2 560 (thin-space thousands), as a museum label would write a number of bits."""
    return f"{int(round(n)):,}".replace(",", "\u2009")


def metrics_row(method, M, bits, h, w, x, x_hat, enc_ms, dec_ms, note=""):
    """One row (keys :data:`METRIC_COLUMNS`) of the app's metrics table: x, x_hat (3, H, W) in [0, 1]; bits of
    the whole image."""
    m = image_metrics(x.unsqueeze(0), x_hat.unsqueeze(0))
    return {
        "method": method, "M": M if M is not None else "–", "bits": int(round(bits)),
        "bpp": _fmt(bits / (h * w), 4), "PSNR dB": _fmt(m["psnr"][0].item()), "SSIM": _fmt(m["ssim"][0].item(), 4),
        "MS-SSIM": _fmt(m["ms_ssim"][0].item(), 4),
        "LPIPS": _fmt(m["lpips"][0].item(), 4) if m["lpips"] is not None else "n/a",
        "encode ms": _fmt(enc_ms, 1), "decode ms": _fmt(dec_ms, 1), "note": note,
    }


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else -10 * math.log10(mse)


def bits_to_match(codec: PillowCodec, x: torch.Tensor, target_psnr: float) -> int | None:
    """Fewest bits at which ``codec`` reaches ``target_psnr`` on ``x`` (binary search over its quality, which
    PSNR follows nearly monotonically); None when even quality 100 falls short."""
    def at(q):
        e = codec.compress(x, quality=q)
        return e.bits, psnr(x, codec.decompress(e))

    if at(100)[1] < target_psnr:
        return None
    lo, hi = 1, 100
    while lo < hi:
        mid = (lo + hi) // 2
        if at(mid)[1] >= target_psnr:
            hi = mid
        else:
            lo = mid + 1
    return int(at(lo)[0])


def verdict(codec: PillowCodec, x: torch.Tensor, x_hat: torch.Tensor, y: torch.Tensor, fits: bool,
            min_bits: float = 0, lang: str = "en") -> str:
    """"With the same bits WebP gives a worse picture (…); WebP needs 4 880 bits to look as good." — ``y`` is
    ``codec``'s picture at the same bits as ``x_hat``; ``fits`` False when ``codec`` could not get down to
    them (its smallest file, ``min_bits``, is then what the line quotes)."""
    name = codec.name.upper() if codec.name == "jpeg" else "WebP"
    pt, pc = psnr(x, x_hat), psnr(x, y)
    if not fits:
        return tr("verdict_nofit", lang, codec=name, need=grouped(min_bits))
    if pc < pt:
        need = bits_to_match(codec, x, pt)
        match = tr("verdict_match", lang, codec=name, need=grouped(need)) if need else ""
        return tr("verdict_worse", lang, codec=name, psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}", match=match)
    return tr("verdict_better", lang, codec=name, psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}")


@dataclass
class SameBits:
    rows: list[dict] = field(default_factory=list)               # metrics rows "jpeg @ same bits", "webp @ same bits"
    images: dict[str, Image.Image] = field(default_factory=dict)  # each baseline's decoded picture
    notes: list[str] = field(default_factory=list)               # a baseline that could not get down to the bits
    verdict: str = ""                                            # the one line about WebP (see :func:`verdict`)


def same_bits(x: torch.Tensor, x_hat: torch.Tensor, bits: float, lang: str = "en") -> SameBits:
    """JPEG and WebP of ``x`` (3, H, W) at (at most) ``bits``, measured like ``x_hat``, the picture they are
    compared with; plus the verdict line."""
    h, w = x.shape[-2:]
    out = SameBits()
    for name in BASELINES:
        codec: PillowCodec = registry.load(name)
        br = codec.compress_at_bits(x, bits)
        t0 = time.perf_counter()
        y = codec.decompress(br.encoded)
        d_ms = (time.perf_counter() - t0) * 1e3
        out.rows.append(metrics_row(f"{name} @ same bits", None, br.encoded.bits, h, w, x, y,
                                    br.encoded.encode_ms, d_ms, br.note()))
        out.images[name] = tensor_to_pil(y)
        if not br.fits:
            out.notes.append(br.note())
        if name == VERDICT_CODEC:
            out.verdict = verdict(codec, x, x_hat, y, br.fits, br.encoded.bits, lang)
    return out
