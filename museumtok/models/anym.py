"""Any-M tokenizer: 1-D latent tokens from a Perceiver Resampler, trained with nested dropout so that
the first m tokens reconstruct the image for every m ≤ M_max. Beyond the review (its §10.1 asks for
dynamic token allocation).

Ingredients, each from its paper:

* Perceiver Resampler (Alayrac et al. 2022, Flamingo, arXiv:2204.14198): M_max learned latents read
  the encoder's patch features, giving a 1-D sequence of tokens with no grid attached
  (:mod:`museumtok.models.resampler`). 1-D tokens as in TiTok (Yu et al. 2024, "An Image is Worth 32
  Tokens for Reconstruction and Generation", NeurIPS, arXiv:2406.07550).
* Finite scalar quantization (Mentzer et al. 2024, ICLR, arXiv:2309.15505) of each token: no
  codebook to collapse, K = Π L_i (:class:`museumtok.quantize.fsq.FSQ`).
* Nested dropout (Rippel, Gelbart & Adams 2014, "Learning Ordered Representations with Nested
  Dropout", ICML, arXiv:1402.0915): each training image keeps only its first m tokens, m drawn at
  random, so information is packed coarse-to-fine in token order — the ordered tail-drop of FlexTok
  (Bachmann et al. 2025, ICML, arXiv:2502.13967) and One-D-Piece's "tail token drop" (Miwa et al.
  2025, arXiv:2501.10064).
* Decoder: a resampler whose queries are a fixed, learned grid of (S/f)² positions; they read the m
  tokens (the rest masked) and become a feature map for a conv decoder (the VQ-VAE blocks of
  :mod:`museumtok.models.layers`).

Data flow (S = 64, f = 8, d = 96, M_max = 64)::

    x (B, 3, S, S) ─Encoder─▶ (B, d, S/f, S/f) ─rearrange─▶ (B, N, d) + pos (N, d)      N = (S/f)²
      ─PerceiverResampler(M_max latents)─▶ z (B, M_max, d) ─FSQ─▶ ẑ (B, M_max, d), k (B, M_max)
    keep the first m:  mask (B, M_max) = [i < m]                 training: m ~ p(m); inference: m = M
    ẑ + slot (M_max, d) ─PerceiverResampler(queries = grid (N, d), mask)─▶ (B, N, d)
      ─rearrange─▶ (B, d, S/f, S/f) ─Decoder─▶ x̂ (B, 3, S, S)
    L = ‖x − x̂‖²   (FSQ has no auxiliary loss)
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
from .resampler import PerceiverResampler, ResamplerOutput


@dataclass
class AnyMConfig:
    image_size: int = 64                  # working side S in pixels (training crops and inference)
    f: int = 8                            # encoder downsampling: N = (S/f)² patch features
    channels: tuple[int, ...] = (16, 32, 64)        # conv widths at full res, 1/2, …, 1/f (last one repeats)
    num_res: int = 1                      # residual blocks per resolution in the conv encoder/decoder
    dim: int = 96                         # width d of the features, tokens and resampler blocks
    max_tokens: int = 64                  # M_max, the number of latent tokens; any M in 1..M_max works
    enc_depth: int = 2                    # layers of the encoding resampler
    dec_depth: int = 2                    # layers of the decoding resampler
    heads: int = 4                        # attention heads
    ff_mult: int = 2                      # FFN width multiplier
    levels: tuple[int, ...] = (8, 5, 5, 5)          # FSQ levels per channel; K = Π L_i (1000)
    q_init_scale: float = 4.0             # resamplers' W_q init × this: sharper first attention (the uniform
                                          # start otherwise leaves every token equal for hundreds of steps)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # JSON gives lists back
        self.levels = tuple(int(v) for v in self.levels)
        if self.image_size % self.f:
            raise ValueError(f"image_size={self.image_size} must be a multiple of f={self.f}")

    @property
    def grid(self) -> int:
        return self.image_size // self.f

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)


def sample_keep(batch: int, max_tokens: int, generator: torch.Generator | None = None,
                log_share: float = 0.5) -> torch.Tensor:
    """Nested dropout: m (B,) in 1..M_max; uniform, or log-uniform for a ``log_share`` of the batch
    (small m are where the ordering is learned, so they are drawn more often)."""
    u = torch.rand(batch, generator=generator)
    uniform = 1 + (u * max_tokens).floor().clamp(max=max_tokens - 1)
    loguni = (max_tokens ** u).floor().clamp(1, max_tokens)
    pick = torch.rand(batch, generator=generator) < log_share
    return torch.where(pick, loguni, uniform).long()


def keep_mask(m: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """m (B,) -> (B, M_max) bool, True for the first m_b tokens of each image (ordered tail-drop)."""
    return torch.arange(max_tokens, device=m.device)[None, :] < m[:, None]


@dataclass
class AnyMOutput:
    x_hat: torch.Tensor        # (B, 3, S, S) reconstruction from the kept tokens
    indices: torch.Tensor      # (B, M_max) token ids in [0, K)
    m: torch.Tensor            # (B,) tokens kept per image
    loss: torch.Tensor         # scalar ‖x − x̂‖²


class AnyMAutoencoder(nn.Module, HubMixin):
    """Encoder → Perceiver Resampler → FSQ → masked query-grid resampler → Decoder."""

    def __init__(self, config: AnyMConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = AnyMConfig(**strip_metadata(config))
        self.config = c = config or AnyMConfig()
        self._hub_mixin_config = c
        N = c.grid**2
        self.encoder = Encoder(c.f, c.channels, c.num_res, out_channels=c.dim)
        self.pos = nn.Parameter(torch.randn(N, c.dim) * 0.02)                # (N, d) patch positions
        self.resampler = PerceiverResampler(c.dim, c.max_tokens, c.enc_depth, c.heads, c.ff_mult,
                                            q_init_scale=c.q_init_scale)
        self.quantizer = FSQ(c.levels, dim=c.dim)
        self.slot = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)    # (M_max, d) token order
        self.unresampler = PerceiverResampler(c.dim, N, c.dec_depth, c.heads, c.ff_mult,
                                              q_init_scale=c.q_init_scale)  # latents = query grid
        self.decoder = Decoder(c.f, c.channels, c.num_res, in_channels=c.dim)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def max_tokens(self) -> int:
        return self.config.max_tokens

    # ---- the pieces ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [0, 1] -> patch features (B, N, d) with positions added."""
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"expected {self.config.image_size}×{self.config.image_size} images, got {tuple(x.shape[-2:])}")
        h = self.encoder(to_signed(x))                                       # (B, d, S/f, S/f)
        return rearrange(h, "b d h w -> b (h w) d") + self.pos               # (B, N, d)

    def encode_latents(self, x: torch.Tensor, return_attention: bool = False) -> ResamplerOutput:
        """x -> the resampler's output: latents z (B, M_max, d) and, if asked, attention maps."""
        return self.resampler(self.features(x), return_attention=return_attention)

    def quantize(self, z: torch.Tensor, noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, M, d) -> ẑ (B, M, d) (straight-through), indices (B, M).

        ``noise=True`` (training warm-up): rounding is replaced by additive uniform noise of one
        level's width (Ballé, Laparra & Simoncelli 2017, arXiv:1611.01704), so the gradient sees what
        a quantization step costs without the rounding hiding small changes of z.
        """
        q = self.quantizer(rearrange(z, "b m d -> b d 1 m"))                # FSQ on a 1×M "image"
        z_q = q.z_q
        if noise:
            fsq = self.quantizer
            u = fsq.bound(rearrange(fsq.project_in(rearrange(z, "b m d -> b d 1 m")), "b c 1 m -> b m c"))
            u = (u + torch.rand_like(u) - 0.5) / fsq._half_width               # (B, M, d_fsq)
            z_q = fsq.project_out(rearrange(u, "b m c -> b c 1 m"))
        return rearrange(z_q, "b d 1 m -> b m d"), rearrange(q.indices, "b 1 m -> b m")

    def decode_tokens(self, z_hat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ẑ (B, m, d) (first m tokens; ``mask`` (B, m) hides more) -> x̂ (B, 3, S, S), not clamped."""
        m = z_hat.shape[1]
        if not 1 <= m <= self.max_tokens:
            raise ValueError(f"between 1 and {self.max_tokens} tokens can be decoded, got {m}")
        tokens = z_hat + self.slot[:m]                                        # (B, m, d)
        g = self.unresampler(tokens, mask=mask).latents                       # (B, N, d)
        h = rearrange(g, "b (h w) d -> b d h w", h=self.config.grid)          # (B, d, S/f, S/f)
        return to_unit(self.decoder(h))

    # ---- training -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None, noise: bool = False) -> AnyMOutput:
        """Nested-dropout pass: keep the first m_b tokens of image b (drawn if ``m`` is None);
        ``noise``: uniform-noise proxy instead of rounding (see :meth:`quantize`)."""
        z = self.encode_latents(x).latents                                    # (B, M_max, d)
        z_hat, idx = self.quantize(z, noise=noise)
        if m is None:
            m = sample_keep(x.shape[0], self.max_tokens).to(x.device)
        x_hat = self.decode_tokens(z_hat, keep_mask(m, self.max_tokens))
        return AnyMOutput(x_hat, idx, m, F.mse_loss(x_hat, x))

    # ---- tokens -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, M: int | None = None) -> torch.Tensor:
        """x (B, 3, S, S) -> the first M token ids (B, M) (all M_max when M is None)."""
        _, idx = self.quantize(self.encode_latents(x.float()).latents)
        return idx[:, : (M or self.max_tokens)]

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, m) ids -> ẑ (B, m, d)."""
        b = indices.shape[0]
        codes = self.quantizer.indices_to_codes(indices.reshape(-1).long())   # (B·m, d)
        return rearrange(codes, "(b m) d -> b m d", b=b)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, m) ids, the first m tokens -> x̂ (B, 3, S, S) clamped to [0, 1]."""
        return self.decode_tokens(self.indices_to_codes(indices)).clamp(0, 1)

    def config_dict(self) -> dict:
        return asdict(self.config)
