"""Layers of the learned codecs (§5): GDN / IGDN, the 5×5 stride-2 transforms, the mask-A convolution.

- GDN and its inverse IGDN: Ballé, Laparra & Simoncelli, "Density Modeling of Images using a Generalized
  Normalization Transformation", ICLR 2016 (arXiv:1511.06281); used as the codecs' non-linearity by
  Ballé, Laparra & Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017 (arXiv:1611.01704)::

      GDN:   y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)        IGDN:  y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)

  β and γ are kept non-negative by a lower bound whose gradient still flows back into the feasible
  side (the "LowerBound" trick of the reference implementations).
- g_a / g_s: four 5×5 stride-2 (transposed) convolutions with GDN between them (Ballé et al. 2017/2018)::

      g_a: x (B, 3, H, W) ─conv─GDN─conv─GDN─conv─GDN─conv─▶ y (B, M, H/16, W/16)
      g_s: ŷ (B, M, h, w) ─deconv─IGDN─ … ─deconv─▶ x̂ (B, 3, 16h, 16w)

- :class:`MaskedConv2d`: the mask "A" convolution of PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu,
  "Pixel Recurrent Neural Networks", ICML 2016, arXiv:1601.06759) that the context model of Minnen, Ballé
  & Toderici (NeurIPS 2018, arXiv:1809.02736) runs over ŷ: each position sees only the ones before it in
  raster order.

The tokenizers' building blocks (VQ-VAE residual blocks, the shared conv encoder/decoder) are in
:mod:`museumtok.models.layers`; nothing here is shared with them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy.bound import lower_bound


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


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a of Ballé et al. 2017/2018: four stride-2 5×5 convolutions with GDN, (B, 3, H, W) -> (B, M, H/16, W/16)."""
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s: the mirror of :func:`analysis_transform` with inverse GDN, (B, M, h, w) -> (B, 3, 16h, 16w)."""
    return nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                         deconv(N, N), GDN(N, inverse=True), deconv(N, 3))


class MaskedConv2d(nn.Conv2d):
    """Convolution that sees only positions strictly before the centre in raster order (mask "A")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _, _, kh, kw = self.weight.shape
        mask = torch.ones_like(self.weight)
        mask[:, :, kh // 2, kw // 2:] = 0
        mask[:, :, kh // 2 + 1:] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask.to(self.weight.dtype), self.bias, self.stride, self.padding)
