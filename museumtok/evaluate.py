"""Held-out evaluation shared by training scripts, model cards, the app and the bench."""
from __future__ import annotations

import math
import time

import torch

from .data.dataset import eval_batch
from .data.images import to_uint8_grid
from .metrics import codebook_stats, lpips_available, lpips_distance, ms_ssim, psnr, ssim


def image_metrics(x: torch.Tensor, x_hat: torch.Tensor, with_lpips: bool = True) -> dict[str, torch.Tensor | None]:
    """PSNR, SSIM, MS-SSIM (and LPIPS when available) per image for (N, 3, S, S) batches.

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
        xb = x[s : s + batch_size]
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
def codec_rd_points(codec, x: torch.Tensor, settings, param: str = "quality") -> list[dict]:
    """Per-image RD points of a codec over a sweep of one setting, for a (N, 3, H, W) batch.

    Each point is {param, image, bits, bpp, psnr, ssim, ms_ssim, encode_ms, decode_ms}: bits from the
    real bitstream.
    """
    out = []
    for s in settings:
        for i, xi in enumerate(x):
            t0 = time.perf_counter()
            enc = codec.compress(xi, **{param: s})
            t1 = time.perf_counter()
            x_hat = codec.decompress(enc)[None]
            t2 = time.perf_counter()
            m = image_metrics(xi[None], x_hat, with_lpips=False)
            out.append({param: s, "image": i, "bits": enc.bits, "bpp": enc.bpp,
                        "psnr": float(m["psnr"]), "ssim": float(m["ssim"]), "ms_ssim": float(m["ms_ssim"]),
                        "encode_ms": 1e3 * (t1 - t0), "decode_ms": 1e3 * (t2 - t1)})
    return out


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
