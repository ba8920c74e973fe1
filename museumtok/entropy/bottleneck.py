"""Factorized entropy bottleneck — Ballé, Laparra & Simoncelli, "End-to-end optimized image compression",
ICLR 2017 (arXiv:1611.01704); the flexible univariate density is that of Ballé, Minnen, Singh, Hwang &
Johnston, ICLR 2018 (arXiv:1802.01436), Appendix 6.1.

Each channel c of a latent has its own learned density p_c, shared by all spatial positions:

    p(ỹ) = Π_{c,i,j} (p_c ∗ U(−½, ½))(ỹ_cij)          (the "fully factorized" prior)
    P(ŷ = k) = c_c(k + ½) − c_c(k − ½)                  c_c = a learned CDF, a monotone MLP
    c_c = sigmoid ∘ f_K ∘ … ∘ f_1,  f_k(x) = g_k(H_k x + b_k),  g_k(x) = x + a_k ⊙ tanh(x)

with H_k ≥ 0 (softplus) and a_k ≥ −1 (tanh), so c_c is non-decreasing. In training ỹ = y + u with
u ~ U(−½, ½) (§3.2: additive uniform noise stands in for rounding); at test time ŷ = round(y).

    y (B, C, H, W) ──round / +u──▶ ŷ ──c_c(ŷ±½)──▶ likelihoods (B, C, H, W)
                                 └──integer table of channel c──▶ range coder ──▶ bits
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .bound import lower_bound
from .coding import TableDecoder, TableEncoder, pack_tables, quantize_pmf
from .tables import IntegerTables

LIKELIHOOD_BOUND = 1e-9


def quantize(y: torch.Tensor, mode: str, means: torch.Tensor | None = None) -> torch.Tensor:
    """"noise": y + U(−½, ½) (training); "round": round(y − μ) + μ (test); "ste": rounding with identity gradient."""
    if mode == "noise":
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    m = means if means is not None else 0.0
    q = torch.round(y - m) + m
    if mode == "ste":
        return y + (q - y).detach()
    if mode == "round":
        return q
    raise ValueError(f"unknown quantization mode {mode!r}; choose noise, round or ste")


class EntropyBottleneck(IntegerTables):
    """Learned factorized prior over C channels.

    Args:
        channels: C, the number of latent channels.
        filters: hidden widths of the monotone MLP (Ballé 2018 uses (3, 3, 3)).
        init_scale: initial spread of the density (the CDF starts close to a wide logistic).
        tail_mass: probability left outside each channel's table (sent through the escape code).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9):
        super().__init__()
        self.channels = int(channels)
        self.tail_mass = float(tail_mass)
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.H = nn.ParameterList()   # H_k, (C, d_{k+1}, d_k), made non-negative by softplus
        self.b = nn.ParameterList()   # b_k, (C, d_{k+1}, 1)
        self.a = nn.ParameterList()   # a_k, (C, d_{k+1}, 1), squashed by tanh
        for k in range(len(dims) - 1):
            init = float(np.log(np.expm1(1 / scale / dims[k + 1])))
            self.H.append(nn.Parameter(torch.full((self.channels, dims[k + 1], dims[k]), init)))
            self.b.append(nn.Parameter(torch.empty(self.channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.a.append(nn.Parameter(torch.zeros(self.channels, dims[k + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """(C, 1, n) points -> (C, 1, n) logits of c_c (the CDF before the final sigmoid)."""
        for k in range(len(self.H)):
            x = torch.matmul(F.softplus(self.H[k]).to(x.dtype), x) + self.b[k].to(x.dtype)
            if k < len(self.a):
                x = x + torch.tanh(self.a[k]).to(x.dtype) * torch.tanh(x)
        return x

    def likelihood(self, y_hat: torch.Tensor) -> torch.Tensor:
        """P(ŷ) = c(ŷ + ½) − c(ŷ − ½) per element, (B, C, H, W) -> (B, C, H, W)."""
        B, C, H, W = y_hat.shape
        v = y_hat.transpose(0, 1).reshape(C, 1, -1)                          # (C, 1, B·H·W)
        lower, upper = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()                             # evaluate in the accurate tail
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.reshape(C, B, H, W).transpose(0, 1)
        return lower_bound(p, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, training: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, C, H, W) -> (ỹ or ŷ, likelihoods). Noise while training, rounding otherwise."""
        training = self.training if training is None else training
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):  # densities in float32
            y_hat = quantize(y.float(), "noise" if training else "round")
            return y_hat, self.likelihood(y_hat)

    # ---- integer tables ----------------------------------------------------------------------
    @torch.no_grad()
    def update(self, max_range: int = 2048) -> None:
        """Freeze each channel's pmf on the integers into an integer table (float64, run once)."""
        grid = torch.arange(-max_range, max_range + 1, dtype=torch.float64)
        x = grid.view(1, 1, -1).expand(self.channels, 1, -1)
        upper = torch.sigmoid(self.logits_cdf(x + 0.5))[:, 0].numpy()   # c(k + ½)   (C, n)
        lower = torch.sigmoid(self.logits_cdf(x - 0.5))[:, 0].numpy()   # c(k − ½)
        freqs, offsets = [], []
        for c in range(self.channels):
            keep = np.flatnonzero((upper[c] > self.tail_mass / 2) & (lower[c] < 1 - self.tail_mass / 2))
            lo, hi = (int(keep[0]), int(keep[-1])) if keep.size else (max_range, max_range)
            hi = min(hi, lo + 8000)
            pmf = np.clip(upper[c, lo : hi + 1] - lower[c, lo : hi + 1], 0, None)
            tail = lower[c, lo] + (1 - upper[c, hi])
            freqs.append(quantize_pmf(pmf, tail))
            offsets.append(int(grid[lo]))
        self._set_tables(*pack_tables(freqs, offsets))

    def _index(self, shape) -> torch.Tensor:
        B, C, H, W = shape
        return torch.arange(C).view(1, C, 1, 1).expand(B, C, H, W)

    def compress(self, enc: TableEncoder, y: torch.Tensor) -> torch.Tensor:
        """Round y (B, C, H, W), write the symbols, return ŷ."""
        y_hat = torch.round(y)
        self.encode_symbols(enc, y_hat.long(), self._index(y.shape))
        return y_hat

    def decompress(self, dec: TableDecoder, shape) -> torch.Tensor:
        return self.decode_symbols(dec, self._index(shape)).to(torch.float32)

    def bits(self, y_hat: torch.Tensor) -> float:
        return self.table_bits(y_hat.long(), self._index(y_hat.shape))
