"""A token bottleneck with an exchangeable pooler: TokenLearner or Perceiver Resampler at equal M (§10).

The two ways of turning N patch features into M tokens, compared inside one autoencoder where
everything else is the same: the conv encoder and decoder and the query-grid decoding resampler of
the any-M tokenizer (:mod:`museumtok.models.anym`), and FSQ on each token (K = 1000, so both pay
M·log2 1000 bits).

* ``pooler="tokenlearner"``: :class:`museumtok.models.tokenlearner.TokenLearner` (Ryoo et al. 2021,
  arXiv:2106.11297): M spatial softmax maps from a small conv net, M weighted pools.
* ``pooler="resampler"``: :class:`museumtok.models.resampler.PerceiverResampler` (Alayrac et al.
  2022, arXiv:2204.14198): M learned queries attend over the patches (and each other), ``depth`` times.

Data flow (S = 64, f = 8, N = 64 patches)::

    x (B, 3, S, S) ─Encoder─▶ (B, d, 8, 8) ─▶ (B, N, d) + pos ─pooler─▶ z (B, M, d) ─FSQ─▶ ẑ, k (B, M)
    ẑ + slot (M, d) ─PerceiverResampler(queries = grid (N, d))─▶ (B, N, d) ─▶ (B, d, 8, 8) ─Decoder─▶ x̂
    L = ‖x − x̂‖²

Train both with ``museumtok train pooling --pooler tokenlearner`` and ``--pooler resampler``
(:mod:`museumtok.train.pooling`), or for seconds in notebook 10 with :func:`museumtok.train.pooling.fit_pooler`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checkpoint import HubMixin, strip_metadata
from ..quantize.fsq import FSQ
from .layers import Decoder, Encoder, to_signed, to_unit
from .resampler import PerceiverResampler
from .tokenlearner import TokenLearner

POOLERS = ("tokenlearner", "resampler")


@dataclass
class PoolingConfig:
    pooler: str = "tokenlearner"          # "tokenlearner" or "resampler"
    num_tokens: int = 16                  # M, tokens per image
    image_size: int = 64                  # working side S in pixels
    f: int = 8                            # encoder downsampling: N = (S/f)² patch features
    channels: tuple[int, ...] = (16, 32, 64)        # conv widths at full res, 1/2, …, 1/f
    num_res: int = 1                      # residual blocks per resolution
    dim: int = 64                         # width d of features, tokens and attention blocks
    enc_depth: int = 2                    # resampler pooler: layers (TokenLearner has one conv net)
    dec_depth: int = 2                    # decoding (query-grid) resampler layers
    heads: int = 4                        # attention heads
    ff_mult: int = 2                      # FFN width multiplier
    levels: tuple[int, ...] = (8, 5, 5, 5)          # FSQ levels per token; K = Π L_i
    q_init_scale: float = 4.0             # resamplers' W_q init × this (as in anym)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.levels = tuple(int(v) for v in self.levels)
        if self.pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}, got {self.pooler!r}")

    @property
    def grid(self) -> int:
        return self.image_size // self.f

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)


class PooledAutoencoder(nn.Module, HubMixin):
    """Encoder → pooler (TokenLearner | Perceiver Resampler) → FSQ → query-grid resampler → Decoder."""

    def __init__(self, config: PoolingConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = PoolingConfig(**strip_metadata(config))
        self.config = c = config or PoolingConfig()
        self._hub_mixin_config = c
        N = c.grid ** 2
        self.encoder = Encoder(c.f, c.channels, c.num_res, out_channels=c.dim)
        self.pos = nn.Parameter(torch.randn(N, c.dim) * 0.02)
        if c.pooler == "tokenlearner":
            self.pooler = TokenLearner(c.dim, c.num_tokens)
        else:
            self.pooler = PerceiverResampler(c.dim, c.num_tokens, c.enc_depth, c.heads, c.ff_mult,
                                             q_init_scale=c.q_init_scale)
        self.quantizer = FSQ(c.levels, dim=c.dim)
        self.slot = nn.Parameter(torch.randn(c.num_tokens, c.dim) * 0.02)
        self.unresampler = PerceiverResampler(c.dim, N, c.dec_depth, c.heads, c.ff_mult, q_init_scale=c.q_init_scale)
        self.decoder = Decoder(c.f, c.channels, c.num_res, in_channels=c.dim)

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    def pooler_parameters(self) -> int:
        return sum(p.numel() for p in self.pooler.parameters())

    def tokens(self, x: torch.Tensor, return_maps: bool = False):
        """x (B, 3, S, S) in [0, 1] -> z (B, M, d); with ``return_maps`` also (B, M, N) pooling maps
        (TokenLearner: its softmax maps; resampler: last layer's attention over the patches)."""
        h = self.encoder(to_signed(x))
        feats = rearrange(h, "b d h w -> b (h w) d") + self.pos
        if isinstance(self.pooler, TokenLearner):
            out = self.pooler(feats, grid=(h.shape[-2], h.shape[-1]))
            return (out.latents, out.maps) if return_maps else out.latents
        out = self.pooler(feats, return_attention=return_maps)
        return (out.latents, out.patch_attention()) if return_maps else out.latents

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.quantizer(rearrange(z, "b m d -> b d 1 m"))
        return rearrange(q.z_q, "b d 1 m -> b m d"), rearrange(q.indices, "b 1 m -> b m")

    def decode_tokens(self, z_hat: torch.Tensor) -> torch.Tensor:
        g = self.unresampler(z_hat + self.slot).latents                       # (B, N, d)
        return to_unit(self.decoder(rearrange(g, "b (h w) d -> b d h w", h=self.config.grid)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (x̂ unclamped, loss ‖x − x̂‖²)."""
        z_hat, _ = self.quantize(self.tokens(x))
        x_hat = self.decode_tokens(z_hat)
        return x_hat, F.mse_loss(x_hat, x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x.float())[0].clamp(0, 1)

    def config_dict(self) -> dict:
        return asdict(self.config)
