"""Rate–distortion evaluation with real bitstreams (§3.1–3.2, §5.1–5.3), and the Bjøntegaard metrics.

    museumtok eval rd --set kodak            # every bundled learned codec, JPEG and WebP sweeps,
                                             # tokenizers as codecs; JSON + plotly HTML + PNG

Rates are 8 × the bytes actually written (headers included) divided by the pixel count. Kodak images
are coded at their native 768×512; artworks at a 512×512 centre crop of the catalog image.

BD-rate / BD-PSNR (Bjøntegaard, VCEG-M33, 2001) use piecewise cubic (PCHIP) interpolation of
log-rate against PSNR (and PSNR against log-rate), integrated over the overlapping interval, as in
the common "pchip" variant of the JVET reference scripts.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.catalog import named_set
from .data.images import load_image, pil_to_tensor, working_image
from .metrics import ms_ssim, psnr

#: CompressAI's published Kodak results for bmshj2018-hyperprior (MSE, quality 1–8): (bpp, PSNR dB).
#: Source: CompressAI, results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json
#: (Bégaint et al., "CompressAI: a PyTorch library and evaluation platform for end-to-end
#: compression research", arXiv:2011.03029), as quoted in issue 5.
COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK = (
    (0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84),
    (0.669, 34.53), (0.939, 36.74), (1.259, 38.58), (1.660, 40.56),
)

JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
ARTWORK_SIZE = 512


# ---- data -------------------------------------------------------------------------------------
def rd_images(set_name: str, limit: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(id, (3, H, W)) for an evaluation set: Kodak at native size, artworks as a 512 px centre crop."""
    out = []
    for e in named_set(set_name)[:limit]:
        img = load_image(e.find()).image
        x = pil_to_tensor(img) if e.collection == "kodak" else working_image(img, ARTWORK_SIZE).x
        out.append((e.id, x))
    return out


def _metrics(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[float, float]:
    x_hat = torch.round(x_hat.clamp(0, 1) * 255) / 255
    return float(psnr(x, x_hat)[0]), float(ms_ssim(x.unsqueeze(0), x_hat.unsqueeze(0))[0])


@torch.no_grad()
def evaluate_codec(codec, images: list[tuple[str, torch.Tensor]], **params) -> dict:
    """Compress + decompress every image for real; per-image and mean bpp, PSNR, MS-SSIM, ms."""
    rows = []
    for img_id, x in images:
        t0 = time.perf_counter()
        enc = codec.compress(x, **params)
        t1 = time.perf_counter()
        x_hat = codec.decompress(enc)
        t2 = time.perf_counter()
        p, m = _metrics(x, x_hat)
        row = {"image": img_id, "bytes": len(enc.data), "bpp": enc.bpp, "psnr": p, "ms_ssim": m,
               "encode_ms": 1e3 * (t1 - t0), "decode_ms": 1e3 * (t2 - t1)}
        if hasattr(codec, "estimate_bits"):
            row["bpp_estimated"] = sum(codec.estimate_bits(x).values()) / (x.shape[-2] * x.shape[-1])
        rows.append(row)
    return {"params": params, "images": rows, **mean_row(rows)}


def mean_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


# ---- Bjøntegaard -------------------------------------------------------------------------------
def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator

    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _check_curve(rate, dist, name):
    rate, dist = np.asarray(rate, float), np.asarray(dist, float)
    if len(rate) < 2 or len(rate) != len(dist):
        raise ValueError(f"{name}: need at least 2 (rate, PSNR) points of equal length, got {len(rate)} and {len(dist)}")
    if np.any(rate <= 0):
        raise ValueError(f"{name}: rates must be positive")
    if len(np.unique(dist)) != len(dist) or len(np.unique(rate)) != len(rate):
        raise ValueError(f"{name}: repeated rates or PSNRs; BD metrics need distinct points")
    return rate, dist


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average rate difference (%) of the test curve vs the reference at equal PSNR (negative = saves bits)."""
    r1, d1 = _check_curve(rate_ref, psnr_ref, "reference")
    r2, d2 = _check_curve(rate_test, psnr_test, "test")
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if hi <= lo:
        raise ValueError(f"the PSNR ranges do not overlap ({d1.min():.2f}–{d1.max():.2f} vs {d2.min():.2f}–{d2.max():.2f} dB)")
    i1 = _pchip_integral(d1, np.log10(r1), lo, hi)
    i2 = _pchip_integral(d2, np.log10(r2), lo, hi)
    return float((10 ** ((i2 - i1) / (hi - lo)) - 1) * 100)


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average PSNR difference (dB) of the test curve vs the reference at equal rate (positive = better)."""
    r1, d1 = _check_curve(rate_ref, psnr_ref, "reference")
    r2, d2 = _check_curve(rate_test, psnr_test, "test")
    l1, l2 = np.log10(r1), np.log10(r2)
    lo, hi = max(l1.min(), l2.min()), min(l1.max(), l2.max())
    if hi <= lo:
        raise ValueError("the rate ranges do not overlap")
    return float((_pchip_integral(l2, d2, lo, hi) - _pchip_integral(l1, d1, lo, hi)) / (hi - lo))


@dataclass
class Curve:
    name: str
    bpp: list[float]
    psnr: list[float]
    ms_ssim: list[float] | None = None
    kind: str = "codec"      # "codec", "learned", "tokenizer", "reference"


__all__ = ["COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK", "rd_images", "evaluate_codec", "bd_rate", "bd_psnr",
           "Curve", "math", "json", "Path"]
