"""Mean-scale hyperprior with an autoregressive context model — Minnen, Ballé & Toderici, "Joint
Autoregressive and Hierarchical Priors for Learned Image Compression", NeurIPS 2018 (arXiv:1809.02736).

Each element of y gets a Gaussian whose mean μ and scale σ are predicted from two sources: the
hyperprior (as in Ballé et al. 2018) and the already-decoded neighbours of ŷ above and to the left
(a 5×5 masked convolution, PixelCNN-style). The context makes the prior sharper, but the decoder must
then decode ŷ one spatial position at a time, in raster order (§5.2's trade-off: fewer bits, slower).

    x ──g_a──▶ y ──Q──▶ ŷ ───────────────────────────────────────────────▶ g_s ──▶ x̂
               │                 ŷ_<i ──masked 5×5 conv──▶ ctx_i ──┐
               └──h_a──▶ z ──Q──▶ ẑ ──h_s──▶ ψ ───────────────────────┴──▶ entropy parameters ──▶ (μ_i, σ_i)
                            └──▶ factorized P(ẑ)                            P(ŷ_i | μ_i, σ_i) ──▶ range coder

    x (B, 3, H, W) → y (B, M, H/16, W/16) → z (B, N, H/64, W/64);  ψ, ctx (B, 2M, H/16, W/16)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import HubMixin
from ...entropy import EntropyBottleneck, GaussianConditional, quantize
from ...entropy.coding import TableDecoder, TableEncoder
from ..layers import MaskedConv2d, analysis_transform, conv, deconv, synthesis_transform
from .base import LearnedCodec, bits_per_pixel_map, float64_copy


@dataclass
class ContextConfig:
    N: int = 64            # channels of the hidden layers and of the hyper-latent z
    M: int = 96            # channels of the latent y
    lmbda: float = 0.0067  # λ of the training loss R + λ·255²·MSE (metadata)


class SequentialAnalysis:
    """What a context model's sequential coding pass measures, shared by every codec whose
    ``_compress_latents`` returns ŷ, ẑ, μ, σ (the mask-A model here, the Entroformer in
    :mod:`~museumtok.codecs.learned.entroformer`): bits per element and the bpp map under the (μ, σ) the coder uses."""

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> dict:
        """ŷ, ẑ, μ, σ from the sequential pass the coder makes, with bits per element and the bpp map."""
        xp = self.pad(self._check_image(x).float().unsqueeze(0))
        lat = self._compress_latents(TableEncoder(), xp)
        y_hat, z_hat, mu, sigma = lat["y_hat"], lat["z_hat"], lat["mu"], lat["sigma"]
        bits_y = -torch.log2(self.gaussian_conditional.likelihood(y_hat, sigma, mu))
        bits_z = -torch.log2(self.entropy_bottleneck.likelihood(z_hat.double()))
        return {"y_hat": y_hat, "z_hat": z_hat, "sigma": sigma, "mu": mu, "bits_y": bits_y, "bits_z": bits_z,
                "bpp_map": bits_per_pixel_map({"y": (bits_y, 16), "z": (bits_z, 64)}, *xp.shape[-2:]),
                "x_hat": self.g_s(y_hat.float())[..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)}

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor) -> dict[str, float]:
        """−Σ log2 P under the (μ, σ) of the sequential pass (a parallel forward only approximates them)."""
        a = self.analyse(x)
        return {"y": float(a["bits_y"].sum()), "z": float(a["bits_z"].sum())}



class ContextHyperprior(SequentialAnalysis, LearnedCodec, HubMixin):
    divisor = 64
    format_id = 3

    def __init__(self, N: int = 64, M: int = 96, lmbda: float = 0.0067):
        super().__init__()
        self.cfg = ContextConfig(int(N), int(M), float(lmbda))
        self.g_a = analysis_transform(N, M)                      # (B, 3, H, W) -> (B, M, H/16, W/16)
        self.g_s = synthesis_transform(N, M)                     # (B, M, H/16, W/16) -> (B, 3, H, W)
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(), conv(N, N), nn.LeakyReLU(), conv(N, N))
        self.h_s = nn.Sequential(deconv(N, M), nn.LeakyReLU(), deconv(M, M * 3 // 2), nn.LeakyReLU(),
                                 conv(M * 3 // 2, 2 * M, 3, 1))
        self.context_prediction = MaskedConv2d(M, 2 * M, 5, padding=2)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * M, 10 * M // 3, 1), nn.LeakyReLU(), nn.Conv2d(10 * M // 3, 8 * M // 3, 1), nn.LeakyReLU(),
            nn.Conv2d(8 * M // 3, 2 * M, 1))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    def entropy_modules(self):
        return [self.entropy_bottleneck, self.gaussian_conditional]

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)                                           # (B, M, H/16, W/16)
        z = self.h_a(y)                                           # (B, N, H/64, W/64)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        psi = self.h_s(z_hat)                                     # (B, 2M, H/16, W/16)
        y_tilde = quantize(y, "noise" if self.training else "round")
        ctx = self.context_prediction(y_tilde)                    # (B, 2M, H/16, W/16)
        sigma, mu = self.entropy_parameters(torch.cat([psi, ctx], 1)).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, sigma, mu)
        x_hat = self.g_s(quantize(y, "ste", mu) if self.training else y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
                "y": y, "z": z, "y_hat": y_hat, "z_hat": z_hat, "sigma": sigma, "mu": mu}

    # ---- sequential coding -------------------------------------------------------------------
    def _raster(self, psi: torch.Tensor, y: torch.Tensor | None, code) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Walk ŷ in raster order; at each position predict (μ, σ) from ψ and the decoded context, then
        ``code(index (M,), mu (M,), y_i or None) -> symbols (M,)`` writes or reads the M symbols.
        Returns ŷ, μ and σ, each (1, M, h, w) float64."""
        M = self.cfg.M
        _, _, h, w = psi.shape
        k = 5
        # the masked conv and the 1×1 entropy-parameter convs as float64 matrices: one position at a time
        ctx_net = self.context_prediction
        W_ctx = (ctx_net.weight * ctx_net.mask).double().reshape(2 * M, M * k * k)    # (2M, M·25)
        b_ctx = ctx_net.bias.double()
        layers = [(c.weight.double()[:, :, 0, 0], c.bias.double()) for c in self.entropy_parameters
                  if isinstance(c, nn.Conv2d)]
        slope = next(a.negative_slope for a in self.entropy_parameters if isinstance(a, nn.LeakyReLU))
        psi = psi[0].double()                                                         # (2M, h, w)
        y_hat = torch.zeros(M, h + k - 1, w + k - 1, dtype=torch.float64)            # padded by 2 on each side
        mus, sigmas = torch.zeros(1, M, h, w, dtype=torch.float64), torch.zeros(1, M, h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                ctx = W_ctx @ y_hat[:, i : i + k, j : j + k].reshape(-1) + b_ctx            # (2M,)
                p = torch.cat([psi[:, i, j], ctx])                                          # (4M,)
                for n, (Wl, bl) in enumerate(layers):
                    p = Wl @ p + bl
                    if n < len(layers) - 1:
                        p = F.leaky_relu(p, slope)
                sigma, mu = p[:M], p[M:]                                                    # (M,) each
                index = self.gaussian_conditional.scale_index(sigma)
                q = code(index, mu, None if y is None else y[0, :, i, j])
                y_hat[:, i + 2, j + 2] = q.double() + mu
                mus[0, :, i, j], sigmas[0, :, i, j] = mu, sigma
        y_hat = y_hat.unsqueeze(0)
        return y_hat[:, :, 2 : h + 2, 2 : w + 2], mus, sigmas

    def _compress_latents(self, enc: TableEncoder, x: torch.Tensor) -> dict:
        y = self.g_a(x).double()
        z = self.h_a(y.float())
        z_hat = self.entropy_bottleneck.compress(enc, z)
        psi = float64_copy(self.h_s)(z_hat.double())
        table, length, offset = self.gaussian_conditional.numpy_tables()

        def code(index, mu, y_i):
            q = torch.round(y_i - mu).long()
            enc.encode_rows(q.numpy(), index.numpy(), table, length, offset)
            return q

        y_hat, mu, sigma = self._raster(psi, y, code)
        return {"y_hat": y_hat, "z_hat": z_hat, "mu": mu, "sigma": sigma}

    def _decompress_latents(self, dec: TableDecoder, hp: int, wp: int) -> torch.Tensor:
        z_hat = self.entropy_bottleneck.decompress(dec, (1, self.cfg.N, hp // 64, wp // 64))
        psi = float64_copy(self.h_s)(z_hat.double())
        table, length, offset = self.gaussian_conditional.numpy_tables()

        def code(index, mu, _):
            return torch.from_numpy(dec.decode_rows(index.numpy(), table, length, offset))

        y_hat, _, _ = self._raster(psi, None, code)
        return float64_copy(self.g_s)(y_hat)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

