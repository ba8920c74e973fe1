"""Scale hyperprior — Ballé, Minnen, Singh, Hwang & Johnston, "Variational image compression with a
scale hyperprior", ICLR 2018 (arXiv:1802.01436).

The latents y are no longer coded with one fixed density per channel: a second, small autoencoder
sends side information z (the hyper-latent, coded with a factorized prior) from which the decoder
predicts a scale σ for every element of y, and y is coded with a zero-mean Gaussian of that σ (§5.2).

    x ──g_a──▶ y ──Q──▶ ŷ ─────────────────────────────────────────▶ g_s ──▶ x̂
               │                   ┌──▶ GaussianConditional(ŷ | σ) ──▶ bits_y
               └─|·|─h_a──▶ z ──Q──▶ ẑ ──h_s──▶ σ
                              └──▶ EntropyBottleneck(ẑ) ──▶ bits_z (side information)

    x (B, 3, H, W) → y (B, M, H/16, W/16) → z (B, N, H/64, W/64)

Training minimises R + λ·255²·MSE (§3.2) with ỹ = y + U(−½, ½), z̃ = z + U(−½, ½).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ...checkpoint import HubMixin
from ...entropy import EntropyBottleneck, quantize, GaussianConditional
from ...entropy.coding import TableDecoder, TableEncoder
from ..layers import analysis_transform, conv, deconv, synthesis_transform
from .base import LearnedCodec, bits_per_pixel_map, float64_copy


def hyperprior_transforms(N: int, M: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """g_a, g_s, h_a, h_s of the scale hyperprior (Ballé et al. 2018), shared by every codec built on it."""
    g_a = analysis_transform(N, M)                           # (B, 3, H, W) -> (B, M, H/16, W/16)
    g_s = synthesis_transform(N, M)                          # (B, M, H/16, W/16) -> (B, 3, H, W)
    h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))   # y -> z (B, N, H/64, W/64)
    h_s = nn.Sequential(deconv(N, N), nn.ReLU(), deconv(N, N), nn.ReLU(), conv(N, M, 3, 1), nn.ReLU())  # z -> σ
    return g_a, g_s, h_a, h_s


@dataclass
class HyperpriorConfig:
    N: int = 64          # channels of the hidden layers and of the hyper-latent z
    M: int = 96          # channels of the latent y
    lmbda: float = 0.0067  # λ of the training loss R + λ·255²·MSE (metadata; the weights encode it)
    decoder_input: str = "ste"   # in training, g_s reads round(y) with straight-through gradients ("ste": mixed
                                 # quantization) or the noisy ỹ = y + U(−½, ½) that the rate sees ("noise": the paper's
                                 # and CompressAI's choice); at inference both read ŷ


class ScaleHyperprior(LearnedCodec, HubMixin):
    divisor = 64
    format_id = 2

    def __init__(self, N: int = 64, M: int = 96, lmbda: float = 0.0067, decoder_input: str = "ste"):
        super().__init__()
        if decoder_input not in ("ste", "noise"):
            raise ValueError(f"decoder_input must be 'ste' or 'noise', got {decoder_input!r}")
        self.cfg = HyperpriorConfig(int(N), int(M), float(lmbda), decoder_input)
        self.g_a, self.g_s, self.h_a, self.h_s = hyperprior_transforms(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    def entropy_modules(self):
        return [self.entropy_bottleneck, self.gaussian_conditional]

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)                                          # (B, M, H/16, W/16)
        z = self.h_a(torch.abs(y))                               # (B, N, H/64, W/64)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        sigma = self.h_s(z_hat)                                  # (B, M, H/16, W/16)
        y_hat, y_likelihoods = self.gaussian_conditional(y, sigma)
        # mixed quantization (Minnen & Singh, ICIP 2020): the rate sees y + u, the decoder sees
        # round(y) with a straight-through gradient, so g_s trains on the values it will decode
        ste = self.training and self.cfg.decoder_input == "ste"
        x_hat = self.g_s(quantize(y, "ste") if ste else y_hat)   # (B, 3, H, W); y_hat is ỹ (noisy) in training
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
                "y": y, "z": z, "y_hat": y_hat, "z_hat": z_hat, "sigma": sigma}

    # ---- bitstream ---------------------------------------------------------------------------
    def _compress_latents(self, enc: TableEncoder, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y))
        z_hat = self.entropy_bottleneck.compress(enc, z)
        sigma = float64_copy(self.h_s)(z_hat.double())
        y_hat = self.gaussian_conditional.compress(enc, y, sigma)
        return {"y_hat": y_hat, "z_hat": z_hat, "sigma": sigma}

    def _decompress_latents(self, dec: TableDecoder, hp: int, wp: int) -> torch.Tensor:
        z_hat = self.entropy_bottleneck.decompress(dec, (1, self.cfg.N, hp // 64, wp // 64))
        sigma = float64_copy(self.h_s)(z_hat.double())
        y_hat = self.gaussian_conditional.decompress(dec, sigma)
        return float64_copy(self.g_s)(y_hat.double())

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> dict:
        """Everything the notebook draws for one (3, H, W) image: ŷ, ẑ, σ and bits per element."""
        xp = self.pad(self._check_image(x).float().unsqueeze(0))
        lat = self._compress_latents(TableEncoder(), xp)
        y_hat, z_hat, sigma = lat["y_hat"], lat["z_hat"], lat["sigma"]
        bits_y = -torch.log2(self.gaussian_conditional.likelihood(y_hat.double(), sigma))   # (1, M, h, w)
        bits_z = -torch.log2(self.entropy_bottleneck.likelihood(z_hat.double()))             # (1, N, h/4, w/4)
        return {"y_hat": y_hat, "z_hat": z_hat, "sigma": sigma, "bits_y": bits_y, "bits_z": bits_z,
                "bpp_map": bits_per_pixel_map({"y": (bits_y, 16), "z": (bits_z, 64)}, *xp.shape[-2:]),
                "x_hat": self.g_s(y_hat.float())[..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)}

    def config_dict(self) -> dict:
        return asdict(self.cfg)
