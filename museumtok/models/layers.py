"""Layers of the learned codecs: GDN / IGDN (Ballé, Laparra & Simoncelli, ICLR 2016, arXiv:1511.06281)
and the 5×5 stride-2 (transposed) convolutions of Ballé et al. 2017/2018.

    GDN:   y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)        IGDN:  y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)

β and γ are kept non-negative by a lower bound whose gradient still flows back into the feasible
side (the "LowerBound" trick of the reference implementations).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (g < 0)
        return g * pass_through.to(g.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """Generalized divisive normalization over channels; ``inverse=True`` gives IGDN (the decoder's)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.pedestal = 2.0 ** -36
        # stored as square roots (+ pedestal), as in the reference implementation
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self.pedestal))                 # (C,)
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self.pedestal))    # (C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        C = x.shape[1]
        beta = lower_bound(self.beta, (self.beta_min + self.pedestal) ** 0.5) ** 2 - self.pedestal
        gamma = lower_bound(self.gamma, self.pedestal ** 0.5) ** 2 - self.pedestal
        norm = F.conv2d(x * x, gamma.to(x.dtype).view(C, C, 1, 1), beta.to(x.dtype))
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


def conv(c_in: int, c_out: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)


def deconv(c_in: int, c_out: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=k // 2, output_padding=stride - 1)
