"""Held-out measurement: image metrics on the 8-bit grid, a tokenizer on a named set, a codec on images.

* :func:`image_metrics` — PSNR, SSIM (Wang et al., IEEE TIP 2004), MS-SSIM (Wang, Simoncelli & Bovik,
  Asilomar 2003) and LPIPS (Zhang et al., CVPR 2018) per image, after rounding the reconstruction to
  8 bits. The one place reconstructions are rounded and scored; everything below uses it.
* :func:`evaluate_tokenizer` — mean metrics and codebook statistics of a tokenizer at M on a set.
* :func:`measure_codec` — **the** codec-measuring loop: compress each image for real (at a setting or at a
  bit budget), decompress, time both, score. :func:`codec_rd_points` (notebook 03),
  :func:`museumtok.eval.rd.evaluate_codec` (``museumtok eval rd``) and the bench's codec rows
  (:mod:`museumtok.eval.bench`) are views of it.
* :func:`mean_rd_curve` — per-setting means of per-image points.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch

from ..data.dataset import eval_batch
from ..data.images import to_uint8_grid
from ..metrics import codebook_stats, lpips_available, lpips_distance, ms_ssim, psnr, ssim


def image_metrics(x: torch.Tensor, x_hat: torch.Tensor, with_lpips: bool = True) -> dict[str, torch.Tensor | None]:
    """PSNR, SSIM, MS-SSIM (and LPIPS when available) per image for (N, 3, H, W) batches.

    ``x_hat`` is rounded to 8 bits first: that is the image a visitor would see or save.
    """
    x_hat = to_uint8_grid(x_hat)
    out: dict[str, torch.Tensor | None] = {
        "psnr": psnr(x, x_hat), "ssim": ssim(x, x_hat), "ms_ssim": ms_ssim(x, x_hat), "lpips": None,
    }
    if with_lpips and lpips_available()[0]:
        out["lpips"] = lpips_distance(x, x_hat)
    return out


@torch.no_grad()
def evaluate_tokenizer(tok, set_name: str, M: int, limit: int | None = None, batch_size: int = 16,
                       per_image: bool = False) -> dict:
    """Mean reconstruction metrics and codebook statistics of ``tok`` at ``M`` on a named set.

    ``bits_coded`` is the mean entropy-coded size per image under the tokenizer's own prior
    (``tok.entropy_bits``), or None when it has none. ``per_image=True`` adds a ``per_image`` list
    (catalog id, PSNR, SSIM, MS-SSIM, LPIPS, coded bits of each image), used by the bench's error analysis.
    """
    size = tok.working_size(M)
    x, entries = eval_batch(set_name, size, limit)
    rows, all_idx, coded = [], [], []
    t_enc = t_dec = 0.0
    for s in range(0, len(x), batch_size):
        xb = x[s : s + batch_size]                                   # (B, 3, S, S)
        t0 = time.perf_counter()
        idx = tok.encode_tensor(xb, M)
        t1 = time.perf_counter()
        x_hat = tok.decode_indices(idx, M)
        t2 = time.perf_counter()
        t_enc += t1 - t0
        t_dec += t2 - t1
        rows.append(image_metrics(xb, x_hat))
        all_idx.append(idx.reshape(-1))
        coded.extend(tok.entropy_bits(i) for i in idx)
    idx = torch.cat(all_idx)
    st = codebook_stats(idx, tok.K)

    def mean(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return float(torch.cat(vals).mean()) if vals else None

    bits = M * math.log2(tok.K)
    bits_coded = None if any(c is None for c in coded) else sum(float(c) for c in coded) / len(coded)
    out = {
        "set": set_name, "M": M, "size": size, "images": len(entries),
        "psnr": mean("psnr"), "ssim": mean("ssim"), "ms_ssim": mean("ms_ssim"), "lpips": mean("lpips"),
        "bits": bits, "bpp": bits / size**2, "usage": st.usage, "perplexity": st.perplexity,
        "encode_ms": 1e3 * t_enc / len(entries), "decode_ms": 1e3 * t_dec / len(entries),
        "bits_coded": bits_coded,
    }
    if per_image:
        col = {k: [float(v) for r in rows if r[k] is not None for v in r[k]] for k in ("psnr", "ssim", "ms_ssim", "lpips")}
        out["per_image"] = [
            {"id": e.id, **{k: (col[k][i] if col[k] else None) for k in col},
             "bits_coded": None if coded[i] is None else float(coded[i])}
            for i, e in enumerate(entries)
        ]
    return out


@torch.no_grad()
def measure_codec(codec, images: Iterable[tuple[object, torch.Tensor]], budget_bits: float | None = None,
                  with_lpips: bool = False, estimate: bool = False, keep: bool = False, **params) -> list[dict]:
    """Code every image for real and score it: one row per image.

    ``images``: (id, x (3, H, W)) pairs. The codec runs at ``params`` (e.g. ``quality=50``) or, when
    ``budget_bits`` is given, at the best setting whose file fits that many bits
    (``codec.compress_at_bits``). Each row: ``image`` (the id), ``bits`` and ``bytes`` of the real file
    (headers included), ``bpp``, ``psnr``, ``ssim``, ``ms_ssim``, ``lpips`` (None unless ``with_lpips``
    and the weights are here), ``encode_ms``, ``decode_ms``, ``quality`` (the setting the file records),
    ``fits`` and ``note`` (budget runs: False and why when even the lowest setting overspends);
    ``bpp_estimated`` (the codec's own entropy-model estimate) when ``estimate`` and the codec has one;
    ``x_hat`` (3, H, W), the decoded image, when ``keep``.
    """
    rows = []
    for img_id, x in images:
        if budget_bits is not None:
            res = codec.compress_at_bits(x, budget_bits)
            enc, fits = res.encoded, res.fits
            note = "" if fits else res.note()
        else:
            t0 = time.perf_counter()
            enc = codec.compress(x, **params)
            enc.encode_ms = 1e3 * (time.perf_counter() - t0)
            fits, note = True, ""
        t1 = time.perf_counter()
        x_hat = codec.decompress(enc)                                # (3, H, W)
        decode_ms = 1e3 * (time.perf_counter() - t1)
        m = image_metrics(x[None], x_hat[None], with_lpips=with_lpips)
        row = {"image": img_id, "bits": enc.bits, "bytes": len(enc.data), "bpp": enc.bpp,
               **{k: (None if v is None else float(v[0])) for k, v in m.items()},
               "encode_ms": enc.encode_ms, "decode_ms": decode_ms, "quality": enc.params.get("quality"),
               "fits": fits, "note": note}
        if estimate and hasattr(codec, "estimate_bits"):
            row["bpp_estimated"] = sum(codec.estimate_bits(x).values()) / (x.shape[-2] * x.shape[-1])
        if keep:
            row["x_hat"] = x_hat
        rows.append(row)
    return rows


def codec_rd_points(codec, x: torch.Tensor, settings, param: str = "quality") -> list[dict]:
    """Per-image RD points of a codec over a sweep of one setting, for a (N, 3, H, W) batch.

    Each point is {param, image, bits, bpp, psnr, ssim, ms_ssim, encode_ms, decode_ms}: bits from the
    real bitstream (:func:`measure_codec`).
    """
    keys = ("image", "bits", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms", "decode_ms")
    return [{param: s, **{k: r[k] for k in keys}}
            for s in settings for r in measure_codec(codec, enumerate(x), **{param: s})]


def mean_rd_curve(points: list[dict], param: str = "quality") -> list[dict]:
    """Average per-image points setting by setting: mean bpp, PSNR (of per-image PSNR), SSIM, MS-SSIM."""
    by: dict = {}
    for p in points:
        by.setdefault(p[param], []).append(p)
    curve = []
    for s in sorted(by):
        ps = by[s]
        curve.append({param: s, **{k: sum(p[k] for p in ps) / len(ps) for k in ("bpp", "psnr", "ssim", "ms_ssim")}})
    return curve


__all__ = ["image_metrics", "evaluate_tokenizer", "measure_codec", "codec_rd_points", "mean_rd_curve"]
