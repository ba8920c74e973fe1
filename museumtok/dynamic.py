"""Dynamic token budgets (§10 of the review): how many tokens each image gets.

With an ordered tokenizer (``anym-k1000``, trained with nested dropout: Rippel, Gelbart & Adams 2014,
"Learning Ordered Representations with Nested Dropout", ICML, arXiv:1402.0915) the first M tokens of
one encoding decode the image for every M, so the budget can be chosen per image after encoding.

* :func:`prefix_curves`: PSNR of every prefix length M = 1…M_max for each image (one encoding, M_max
  decodes), the raw material of every budget rule below.
* :func:`allocate_by_content`: a budget from content alone, before any decoding: M_i ∝ score_i^γ
  (a content statistic, e.g. edge density, which predicts PSNR: Spearman ρ ≈ −0.9, §9.3), rescaled
  to a given mean and clipped to [M_min, M_max], with integer M_i summing exactly to n·mean.
* :func:`allocate_optimal`: the hindsight optimum of the mean PSNR for the same total (dynamic
  programming on the curves, i.e. after decoding every prefix: an upper bound, not a rule one can
  run before decoding).
* :func:`budget_report`: mean, worst and spread of PSNR of an allocation, read off the curves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import psnr


@torch.no_grad()
def prefix_curves(model, x: torch.Tensor, Ms: list[int] | None = None, batch_size: int = 16) -> np.ndarray:
    """PSNR (dB) of each image of ``x`` (N, 3, S, S) decoded from its first M tokens, for M in ``Ms``
    (default 1…M_max); (N, len(Ms)). ``model`` is an :class:`museumtok.models.anym.AnyMAutoencoder`."""
    Ms = list(Ms or range(1, model.max_tokens + 1))
    out = np.zeros((len(x), len(Ms)))
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].float()
        idx = model.encode_indices(xb)                                      # (B, M_max), encoded once
        for j, M in enumerate(Ms):
            out[s:s + len(xb), j] = psnr(xb, model.decode_indices(idx[:, :M])).double().numpy()
    return out


def _round_to_total(raw: np.ndarray, total: int, lo: int, hi: int) -> np.ndarray:
    """Integers in [lo, hi] summing to ``total``, as close to ``raw`` as the largest remainders allow."""
    m = np.clip(np.floor(raw), lo, hi).astype(int)
    frac = raw - np.floor(raw)
    while m.sum() < total:
        cand = np.where(m < hi)[0]
        i = cand[np.argmax(frac[cand])]
        m[i] += 1
        frac[i] = -1
    while m.sum() > total:
        cand = np.where(m > lo)[0]
        i = cand[np.argmin(frac[cand])]
        m[i] -= 1
        frac[i] = 2
    return m


def allocate_by_content(scores, mean_M: float, M_min: int = 1, M_max: int = 64, gamma: float = 1.0) -> np.ndarray:
    """Per-image token counts from a content score: M_i ∝ score_i^γ, mean ``mean_M``, in [M_min, M_max].

    γ = 0 gives every image the same budget; larger γ moves more tokens to the busiest images. The
    proportional shares are rescaled (a few bisection steps, because of the clipping) so that the
    integer budgets sum exactly to round(n · mean_M).
    """
    s = np.maximum(np.asarray(scores, dtype=np.float64), 1e-9) ** gamma
    n = len(s)
    total = int(round(n * mean_M))
    if not n * M_min <= total <= n * M_max:
        raise ValueError(f"a mean of {mean_M} tokens is outside [{M_min}, {M_max}]")
    lo, hi = 0.0, M_max / s.min()
    for _ in range(60):                         # find c with Σ clip(c·s) = total
        c = (lo + hi) / 2
        if np.clip(c * s, M_min, M_max).sum() < total:
            lo = c
        else:
            hi = c
    return _round_to_total(np.clip(hi * s, M_min, M_max), total, M_min, M_max)


def allocate_optimal(curves: np.ndarray, mean_M: float, M_min: int = 1) -> np.ndarray:
    """The allocation of exactly n·mean_M tokens that maximises the mean PSNR given the curves
    (N, M_max) of :func:`prefix_curves` (column j = M j+1), by dynamic programming over the images
    (a knapsack: exact even though the curves are neither concave nor always increasing). It needs
    every prefix decoded, so it is a hindsight bound for the rules that must decide before decoding."""
    n, M_max = curves.shape
    total = int(round(n * mean_M))
    if not n * M_min <= total <= n * M_max:
        raise ValueError(f"a mean of {mean_M} tokens is outside [{M_min}, {M_max}]")
    NEG = -1e18
    best = np.full(total + 1, NEG)
    best[0] = 0.0
    choice = np.zeros((n, total + 1), dtype=int)
    for i in range(n):
        new = np.full(total + 1, NEG)
        for m in range(M_min, min(M_max, total) + 1):
            cand = np.full(total + 1, NEG)
            cand[m:] = best[: total + 1 - m] + curves[i, m - 1]
            better = cand > new
            new[better] = cand[better]
            choice[i, better] = m
        best = new
    M, t = np.zeros(n, dtype=int), total
    for i in range(n - 1, -1, -1):
        M[i] = choice[i, t]
        t -= M[i]
    return M


@dataclass
class BudgetResult:
    name: str
    M: np.ndarray                 # tokens per image
    psnr: np.ndarray              # PSNR per image (dB)

    @property
    def mean_M(self) -> float:
        return float(self.M.mean())

    def row(self) -> dict:
        return {"budget": self.name, "mean M": round(self.mean_M, 2), "M range": f"{self.M.min()}–{self.M.max()}",
                "mean PSNR": round(float(self.psnr.mean()), 2), "worst PSNR": round(float(self.psnr.min()), 2),
                "PSNR std": round(float(self.psnr.std()), 2)}


def budget_report(curves: np.ndarray, allocations: dict[str, np.ndarray]) -> list[BudgetResult]:
    """Each allocation's per-image PSNR read off the curves (N, M_max)."""
    rows = np.arange(curves.shape[0])
    return [BudgetResult(name, np.asarray(M), curves[rows, np.asarray(M) - 1]) for name, M in allocations.items()]


def rate_of_prefix(M: int, K: int) -> float:
    """Raw bits of M tokens from a K-word vocabulary, M·log2 K."""
    return M * math.log2(K)
