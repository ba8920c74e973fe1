"""Two-level multi-scale tokens: a coarse 8×8 grid and a fine 16×16 residual grid (§5.5).

The review's §5.5 describes "two compression levels, 8× and 16×, 64 or 256 tokens per image" and
attributes them to Idefics2; Idefics2 has no such tokenizer (one perceiver pooling to 64 continuous
tokens, 320 with image splitting — see data/errata.csv). What is built here is the idea itself, with
residual quantization across scales as in VQ-VAE-2's hierarchy (Razavi, van den Oord & Vinyals 2019,
"Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS, arXiv:1906.00446) and VAR's
multi-scale residual tokens (Tian et al. 2024, "Visual Autoregressive Modeling: Scalable Image
Generation via Next-Scale Prediction", NeurIPS, arXiv:2404.02905): the fine level codes only what the
coarse level missed, so the coarse tokens alone are a complete (blurrier) image and M ∈ {64, 64+256}.

Data flow (S = 128, f = 8, each level FSQ-quantized, K = Π L_i)::

    x (B, 3, S, S) ─Encoder (f=8)─▶ h (B, d, 16, 16)
    coarse:  h ─conv 2×2 / 2─▶ (B, d, 8, 8) ─FSQ─▶ ẑ₁, k₁ (B, 8, 8)         64 tokens
             u = Up(ẑ₁)  (nearest ×2, conv 3×3)  (B, d, 16, 16)
    fine:    r = h − u ─FSQ─▶ r̂, k₂ (B, 16, 16)                              256 tokens
    decode:  x̂ = Decoder(u)  (M = 64)   or   Decoder(u + r̂)  (M = 320)
    L = ‖x − x̂‖², with the fine level dropped for a random half of each batch, so that both
    M = 64 and M = 320 decode well from one decoder.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import HubMixin, strip_metadata
from ..quantize.fsq import FSQ
from .layers import Decoder, Encoder, to_signed, to_unit


@dataclass
class MultiScaleConfig:
    image_size: int = 128                 # working side S; coarse grid (S/16)², fine grid (S/8)²
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv widths at full res, 1/2, 1/4, 1/8
    num_res: int = 1                      # residual blocks per resolution
    dim: int = 64                         # width d of the latent grids
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels of both levels; K = Π L_i
    coarse_only_share: float = 0.5        # training: share of each batch decoded from the coarse level only

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.levels = tuple(int(v) for v in self.levels)
        if self.image_size % 16:
            raise ValueError(f"image_size={self.image_size} must be a multiple of 16")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def coarse_grid(self) -> int:
        return self.image_size // 16

    @property
    def fine_grid(self) -> int:
        return self.image_size // 8


@dataclass
class MultiScaleOutput:
    x_hat: torch.Tensor         # (B, 3, S, S)
    k_coarse: torch.Tensor      # (B, S/16, S/16)
    k_fine: torch.Tensor        # (B, S/8, S/8)
    use_fine: torch.Tensor      # (B,) bool, whether the fine level was added
    loss: torch.Tensor          # scalar ‖x − x̂‖²


class MultiScaleAutoencoder(nn.Module, HubMixin):
    """Encoder → coarse FSQ → fine residual FSQ → Decoder."""

    def __init__(self, config: MultiScaleConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = MultiScaleConfig(**strip_metadata(config))
        self.config = c = config or MultiScaleConfig()
        self._hub_mixin_config = c
        self.encoder = Encoder(8, c.channels, c.num_res, out_channels=c.dim)
        self.down = nn.Conv2d(c.dim, c.dim, 2, stride=2)                    # 16×16 -> 8×8
        self.q_coarse = FSQ(c.levels, dim=c.dim)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c.dim, c.dim, 3, padding=1))
        self.q_fine = FSQ(c.levels, dim=c.dim)
        self.decoder = Decoder(8, c.channels, c.num_res, in_channels=c.dim)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def encode_levels(self, x: torch.Tensor):
        """x (B, 3, S, S) -> (u = Up(ẑ₁) (B, d, S/8, S/8), r̂ (B, d, S/8, S/8), k₁ (B, S/16, S/16), k₂ (B, S/8, S/8))."""
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"expected {self.config.image_size}×{self.config.image_size} images, got {tuple(x.shape[-2:])}")
        h = self.encoder(to_signed(x))                                       # (B, d, 16, 16)
        q1 = self.q_coarse(self.down(h))                                     # z_q (B, d, 8, 8)
        u = self.up(q1.z_q)                                                  # (B, d, 16, 16)
        q2 = self.q_fine(h - u)                                              # the residual
        return u, q2.z_q, q1.indices, q2.indices

    def decode_levels(self, u: torch.Tensor, r_hat: torch.Tensor | None) -> torch.Tensor:
        return to_unit(self.decoder(u if r_hat is None else u + r_hat))

    def forward(self, x: torch.Tensor, use_fine: torch.Tensor | None = None) -> MultiScaleOutput:
        u, r_hat, k1, k2 = self.encode_levels(x)
        if use_fine is None:
            use_fine = torch.rand(x.shape[0], device=x.device) >= self.config.coarse_only_share
        x_hat = self.decode_levels(u, r_hat * use_fine.float()[:, None, None, None])
        return MultiScaleOutput(x_hat, k1, k2, use_fine, F.mse_loss(x_hat, x))

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, fine: bool = True) -> torch.Tensor:
        """x -> (B, 64) coarse ids, or (B, 64 + 256) coarse then fine ids (row-major within a level)."""
        _, _, k1, k2 = self.encode_levels(x.float())
        ids = [k1.flatten(1)] + ([k2.flatten(1)] if fine else [])
        return torch.cat(ids, dim=1)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, 64) or (B, 320) ids -> x̂ (B, 3, S, S) clamped to [0, 1]."""
        c = self.config
        n1, n2 = c.coarse_grid**2, c.fine_grid**2
        if indices.shape[1] not in (n1, n1 + n2):
            raise ValueError(f"expected {n1} or {n1 + n2} tokens, got {indices.shape[1]}")
        k1 = indices[:, :n1].reshape(-1, c.coarse_grid, c.coarse_grid).long()
        u = self.up(self.q_coarse.indices_to_codes(k1))
        r_hat = None
        if indices.shape[1] == n1 + n2:
            r_hat = self.q_fine.indices_to_codes(indices[:, n1:].reshape(-1, c.fine_grid, c.fine_grid).long())
        return self.decode_levels(u, r_hat).clamp(0, 1)

    def config_dict(self) -> dict:
        return asdict(self.config)
