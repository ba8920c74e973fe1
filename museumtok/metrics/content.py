"""Measurable image content statistics, to explain why a tokenizer fails on some artworks (§9.3).

A patch tokenizer with a fixed codebook spends the same bits on every image, so images with much
fine detail lose more than smooth ones. These statistics measure that detail:

* ``hf_energy``: the share of the (mean-removed) luminance spectrum's energy at radial spatial
  frequencies above ``cutoff`` × Nyquist, from the 2-D DFT (Parseval: the shares sum to 1).
* ``edge_density``: the fraction of pixels whose Sobel gradient magnitude exceeds ``threshold``
  (luminance in [0, 1], the gradient normalised as in ``skimage.filters.sobel``).
* ``colourfulness``: Hasler & Süsstrunk's M = σ_rgyb + 0.3·μ_rgyb (Proc. SPIE 5007, 2003),
  on 0–255 RGB, with rg = R − G and yb = ½(R + G) − B.
* ``luma_std``: the standard deviation of luminance (global contrast).

:func:`difficulty_reasons` turns them into words: the statistic on which an image stands furthest
from the set's mean, in standard deviations.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: Luminance weights of ``skimage.color.rgb2gray`` (ITU-R BT.709 primaries).
LUMA_WEIGHTS = (0.2125, 0.7154, 0.0721)

STAT_LABELS = {
    "hf_energy": ("much fine detail (high-frequency energy)", "smooth (little high-frequency energy)"),
    "edge_density": ("many edges", "few edges"),
    "colourfulness": ("strong, varied colour", "muted colour"),
    "luma_std": ("high contrast", "low contrast"),
}


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (N, 3, H, W) in [0, 1] -> luminance (H, W) or (N, H, W), BT.709 weights."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("...chw,c->...hw", x, w)


def hf_energy(x: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of luminance spectral energy above ``cutoff`` × Nyquist (radially), mean removed."""
    y = luminance(x.double())
    y = y - y.mean()
    P = torch.fft.fft2(y).abs() ** 2                       # (H, W) power spectrum
    fy = torch.fft.fftfreq(y.shape[-2], dtype=torch.float64)  # cycles per pixel, Nyquist = 0.5
    fx = torch.fft.fftfreq(y.shape[-1], dtype=torch.float64)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5  # radial frequency / Nyquist
    total = float(P.sum())
    return float(P[r > cutoff].sum()) / total if total > 0 else 0.0


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the luminance, (H, W), normalised like ``skimage.filters.sobel``.

    skimage divides each 3×3 kernel by 4 and returns sqrt((gx² + gy²)/2); borders repeat the edge
    pixel (scipy's "reflect" mode, which for a 3×3 kernel is torch's "replicate").
    """
    y = luminance(x.double())[None, None]                 # (1, 1, H, W)
    y = F.pad(y, (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=torch.float64) / 4
    gx = F.conv2d(y, kx.view(1, 1, 3, 3))
    gy = F.conv2d(y, kx.t().contiguous().view(1, 1, 3, 3))
    return torch.sqrt((gx**2 + gy**2) / 2)[0, 0]


def edge_density(x: torch.Tensor, threshold: float = 0.05) -> float:
    """Fraction of pixels whose Sobel magnitude exceeds ``threshold``."""
    return float((sobel_magnitude(x) > threshold).double().mean())


def colourfulness(x: torch.Tensor) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of a (3, H, W) image in [0, 1], on the 0–255 scale."""
    r, g, b = (x.double() * 255).unbind(0)
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = math.sqrt(float(rg.var(unbiased=False)) + float(yb.var(unbiased=False)))
    mu = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return sigma + 0.3 * mu


def image_statistics(x: torch.Tensor) -> dict[str, float]:
    """All content statistics of one (3, H, W) image in [0, 1]."""
    return {"hf_energy": hf_energy(x), "edge_density": edge_density(x),
            "colourfulness": colourfulness(x), "luma_std": float(luminance(x.double()).std(unbiased=False))}


def zscores(stats: list[dict[str, float]]) -> list[dict[str, float]]:
    """Each statistic standardised over the list (mean 0, population std 1; 0 when constant)."""
    keys = list(stats[0]) if stats else []
    out = [{} for _ in stats]
    for k in keys:
        v = np.array([s[k] for s in stats], dtype=np.float64)
        sd = v.std()
        for i, z in enumerate((v - v.mean()) / sd if sd > 0 else np.zeros_like(v)):
            out[i][k] = float(z)
    return out


def spearman(a, b) -> float:
    """Spearman's rank correlation ρ (average ranks for ties), as ``scipy.stats.spearmanr``."""
    def ranks(v):
        v = np.asarray(v, dtype=np.float64)
        order = v.argsort(kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for u in np.unique(v):  # ties share their mean rank
            m = v == u
            r[m] = r[m].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def _label(k: str, z: float) -> str:
    hi, lo = STAT_LABELS.get(k, (f"high {k}", f"low {k}"))
    return f"{hi if z > 0 else lo} ({z:+.1f}σ)"


def difficulty_reasons(stats: list[dict[str, float]], quality: list[float] | None = None,
                       min_score: float = 0.3) -> list[str]:
    """A short reason per image from its content statistics, e.g. "many edges (+1.7σ)".

    Without ``quality``: the image's most outlying statistic (largest |z|, at least ``min_score`` σ).
    With ``quality`` (e.g. per-image PSNR): each statistic k is weighted by its Spearman correlation
    ρ_k with quality over the set, and score_k = −ρ_k·z_k says how much k pushes the image towards a
    low score. An image below the median quality gets the statistic with the largest score (what
    makes it hard), one above gets the smallest (what makes it easy); "typical content" when no
    |score| reaches ``min_score``.
    """
    zs = zscores(stats)
    if quality is None:
        out = []
        for z in zs:
            k = max(z, key=lambda s: abs(z[s])) if z else None
            out.append("typical content" if k is None or abs(z[k]) < min_score else _label(k, z[k]))
        return out
    keys = list(stats[0]) if stats else []
    rho = {k: spearman([s[k] for s in stats], quality) for k in keys}
    med = float(np.median(quality))
    out = []
    for z, q in zip(zs, quality):
        score = {k: -rho[k] * z[k] for k in keys}
        k = (max if q < med else min)(score, key=score.get) if score else None
        if k is None or abs(score[k]) < min_score:
            out.append("typical content")
        else:
            out.append(f"{_label(k, z[k])}; ρ(PSNR, {k}) = {rho[k]:+.2f}")
    return out
