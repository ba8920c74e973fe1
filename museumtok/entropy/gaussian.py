"""Conditional Gaussian entropy model — Ballé, Minnen, Singh, Hwang & Johnston, "Variational image
compression with a scale hyperprior", ICLR 2018 (arXiv:1802.01436), §3; the mean is that of Minnen,
Ballé & Toderici, NeurIPS 2018 (arXiv:1809.02736).

Each latent element gets its own zero-mean (or mean μ) Gaussian, convolved with a unit box because
ŷ is an integer:

    P(ŷ | σ, μ) = Φ((ŷ − μ + ½) / σ) − Φ((ŷ − μ − ½) / σ)

For coding, σ is snapped to one of ``n_scales`` values spaced evenly in log between ``scale_min``
and ``scale_max``; the pmf of each of those Gaussians is frozen once into an integer table (saved in
the checkpoint), so the encoder and decoder pick the same table from the same integer index.

    σ (B, C, H, W) ──log-snap──▶ index ──table[index]──▶ range coder ◀── ŷ − μ
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ndtr
from torch import nn

from .bottleneck import LIKELIHOOD_BOUND, quantize
from .bound import lower_bound
from .coding import TableDecoder, TableEncoder, pack_tables, quantize_pmf
from .tables import IntegerTables


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2 ** -0.5))


class GaussianConditional(IntegerTables):
    """Gaussian conditional entropy model with snapped scales.

    Args:
        scale_min: σ lower bound (CompressAI's 0.11); smaller scales are raised to it.
        scale_max: the largest tabled σ; larger σ use the last table (still lossless through escapes).
        n_scales: how many tabled σ (log-spaced).
        tail_mass: probability mass outside each table (sent through the escape code).
    """

    def __init__(self, scale_min: float = 0.11, scale_max: float = 64.0, n_scales: int = 64, tail_mass: float = 1e-9):
        super().__init__()
        self.scale_min, self.scale_max, self.n_scales = float(scale_min), float(scale_max), int(n_scales)
        self.tail_mass = float(tail_mass)

    @property
    def scale_table(self) -> np.ndarray:
        return np.exp(np.linspace(math.log(self.scale_min), math.log(self.scale_max), self.n_scales))

    def likelihood(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.abs(y_hat - means) if means is not None else torch.abs(y_hat)  # symmetric: use the lower tail
        s = lower_bound(scales, self.scale_min)          # not clamp_min: σ under the floor can still rise
        p = _std_normal_cdf((0.5 - v) / s) - _std_normal_cdf((-0.5 - v) / s)
        return lower_bound(p, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None,
                training: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ỹ or ŷ, likelihoods) for y, σ (and μ), all (B, C, H, W)."""
        training = self.training if training is None else training
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):  # densities in float32
            y, scales = y.float(), scales.float()
            means = means.float() if means is not None else None
            y_hat = quantize(y, "noise" if training else "round", means)
            return y_hat, self.likelihood(y_hat, scales, means)

    # ---- integer tables ----------------------------------------------------------------------
    @torch.no_grad()
    def update(self) -> None:
        """One integer table per tabled σ: the pmf on −L…L with L = ⌈σ·z⌉, z the tail-mass quantile."""
        z = -float(_ppf(self.tail_mass / 2))
        freqs, offsets = [], []
        for s in self.scale_table:
            L = int(math.ceil(s * z))
            k = np.arange(-L, L + 1, dtype=np.float64)
            pmf = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
            tail = 2 * ndtr(-(L + 0.5) / s)
            freqs.append(quantize_pmf(pmf, tail))
            offsets.append(-L)
        self._set_tables(*pack_tables(freqs, offsets))

    def scale_index(self, scales: torch.Tensor) -> torch.Tensor:
        """σ -> the nearest tabled σ in log (int64). Compute σ in float64 for reproducible indices."""
        lo, hi = math.log(self.scale_min), math.log(self.scale_max)
        t = (torch.log(scales.double().clamp_min(self.scale_min)) - lo) / (hi - lo) * (self.n_scales - 1)
        return torch.round(t).clamp(0, self.n_scales - 1).long()

    def compress(self, enc: TableEncoder, y: torch.Tensor, scales: torch.Tensor,
                 means: torch.Tensor | None = None) -> torch.Tensor:
        """Write round(y − μ) under the tables picked by σ; return ŷ."""
        m = means if means is not None else torch.zeros_like(y)
        q = torch.round(y - m)
        self.encode_symbols(enc, q.long(), self.scale_index(scales))
        return q + m

    def decompress(self, dec: TableDecoder, scales: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        q = self.decode_symbols(dec, self.scale_index(scales)).to(scales.dtype)
        return q + means if means is not None else q

    def bits(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None) -> float:
        q = torch.round(y_hat - means) if means is not None else torch.round(y_hat)
        return self.table_bits(q.long(), self.scale_index(scales))


def _ppf(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))
