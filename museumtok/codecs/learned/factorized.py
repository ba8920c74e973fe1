"""Factorized prior — Ballé, Laparra & Simoncelli, "End-to-end optimized image compression", ICLR 2017
(arXiv:1611.01704), with the GDN transforms and the flexible factorized density of Ballé et al. 2018.

One learned density per latent channel, shared by every position; no side information (§5.1).

    x ──g_a──▶ y ──Q──▶ ŷ ──g_s──▶ x̂
                        └──▶ EntropyBottleneck(ŷ) ──▶ bits

    x (B, 3, H, W) → y (B, M, H/16, W/16)

Training minimises R + λ·255²·MSE (§3.2) with ỹ = y + U(−½, ½).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ...checkpoint import HubMixin
from ...entropy import EntropyBottleneck, quantize
from ...entropy.coding import TableDecoder, TableEncoder
from ..layers import analysis_transform, synthesis_transform
from .base import LearnedCodec, bits_per_pixel_map, float64_copy


@dataclass
class FactorizedConfig:
    N: int = 64          # channels of the hidden layers
    M: int = 96          # channels of the latent y
    lmbda: float = 0.0067  # λ of the training loss R + λ·255²·MSE (metadata; the weights encode it)


class FactorizedPrior(LearnedCodec, HubMixin):
    divisor = 16
    format_id = 1

    def __init__(self, N: int = 64, M: int = 96, lmbda: float = 0.0067):
        super().__init__()
        self.cfg = FactorizedConfig(int(N), int(M), float(lmbda))
        self.g_a = analysis_transform(N, M)                      # (B, 3, H, W) -> (B, M, H/16, W/16)
        self.g_s = synthesis_transform(N, M)                     # (B, M, H/16, W/16) -> (B, 3, H, W)
        self.entropy_bottleneck = EntropyBottleneck(M)

    def entropy_modules(self):
        return [self.entropy_bottleneck]

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)                                          # (B, M, H/16, W/16)
        y_hat, y_likelihoods = self.entropy_bottleneck(y)
        # mixed quantization (Minnen & Singh, ICIP 2020): the rate sees y + u, the decoder sees
        # round(y) with a straight-through gradient, so g_s trains on the values it will decode
        x_hat = self.g_s(quantize(y, "ste") if self.training else y_hat)   # (B, 3, H, W)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}, "y": y, "y_hat": y_hat}

    def _compress_latents(self, enc: TableEncoder, x: torch.Tensor) -> dict:
        return {"y_hat": self.entropy_bottleneck.compress(enc, self.g_a(x))}

    def _decompress_latents(self, dec: TableDecoder, hp: int, wp: int) -> torch.Tensor:
        y_hat = self.entropy_bottleneck.decompress(dec, (1, self.cfg.M, hp // 16, wp // 16))
        return float64_copy(self.g_s)(y_hat.double())

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> dict:
        xp = self.pad(self._check_image(x).float().unsqueeze(0))
        y_hat = torch.round(self.g_a(xp))
        bits_y = -torch.log2(self.entropy_bottleneck.likelihood(y_hat.double()))
        return {"y_hat": y_hat, "bits_y": bits_y,
                "bpp_map": bits_per_pixel_map({"y": (bits_y, 16)}, *xp.shape[-2:]),
                "x_hat": self.g_s(y_hat)[..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)}

    def config_dict(self) -> dict:
        return asdict(self.cfg)
