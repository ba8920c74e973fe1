"""Video tokens (§4.7): a tiny spatio-temporal VQ tokenizer (space f8 × time t4) and the token-rate arithmetic.

The review's §4.7 sketches MAGVIT-style video tokenizers (MAGVIT-v2: Yu et al., "Language Model Beats
Diffusion — Tokenizer is Key to Visual Generation", ICLR 2024, arXiv:2310.05737): a 3-D convolutional
encoder downsamples a clip in space *and* time, and every position of the latent (T', h, w) grid is
one token. Here the VQ-VAE recipe (:mod:`museumtok.models.vqvae`) with 3-D convolutions:

    clip x (B, 3, T, H, W)
      ─Conv3d 3×3×3─▶ (B, c0, T, H, W)
      ─[Conv3d 4×4×4 stride (2,2,2), Res] × log2 t ─[Conv3d 3×4×4 stride (1,2,2), Res] × (log2 f − log2 t)─▶
      ─ReLU, Conv3d 1×1×1─▶ z_e (B, D, T/t, H/f, W/f) ──nearest e_k (per position)──▶ k (B, T/t, H/f, W/f)
    and the mirror image with transposed 3-D convolutions back to x̂ (B, 3, T, H, W).

Token rate. A clip at ``fps`` frames per second of H×W frames gives (fps / t) latent frames per second of
(H/f)·(W/f) tokens each:

    tokens/s = fps / t · (H / f) · (W / f)

The review's own §4.7 parameters — a 16×16 token grid per (latent) frame and 4× temporal compression at
30 fps — give 30 / 4 · 256 = 1,920 tokens/s, not the 512 it states (erratum ``s4-7-rate`` in
data/errata.csv). MAGVIT-v2 itself is causal in time (the first frame is encoded alone: 1 + (T−1)/t latent
frames, e.g. 17 frames → 5); ``causal_first_frame=True`` gives that count. This module's model is not
causal: it needs T divisible by t.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checkpoint import HubMixin, strip_metadata
from ..quantize.vq import VectorQuantizer
from .layers import num_levels, to_signed, to_unit


# ---- arithmetic -------------------------------------------------------------------------------------
def latent_frames(T: int, t: int = 4, causal_first_frame: bool = False) -> int:
    """Latent frames of a T-frame clip: T/t, or 1 + (T−1)/t with a causal first frame (MAGVIT-v2)."""
    if causal_first_frame:
        if (T - 1) % t:
            raise ValueError(f"with a causal first frame T − 1 must be a multiple of t={t}, got T={T}")
        return 1 + (T - 1) // t
    if T % t:
        raise ValueError(f"T={T} frames is not a multiple of the temporal factor t={t}")
    return T // t


def video_token_grid(T: int, H: int, W: int, f: int = 8, t: int = 4, causal_first_frame: bool = False
                     ) -> tuple[int, int, int]:
    """(T', h, w) token grid of a T×H×W clip."""
    if H % f or W % f:
        raise ValueError(f"frame size {H}×{W} must be a multiple of f={f}")
    return latent_frames(T, t, causal_first_frame), H // f, W // f


def tokens_per_second(fps: float, H: int | None = None, W: int | None = None, f: int = 8, t: int = 4,
                      grid: tuple[int, int] | None = None) -> float:
    """fps / t · (H/f)·(W/f) tokens per second; or pass ``grid=(h, w)`` tokens per latent frame directly."""
    if grid is None:
        if H is None or W is None:
            raise ValueError("give the frame size H, W (with f) or the token grid (h, w)")
        if H % f or W % f:
            raise ValueError(f"frame size {H}×{W} must be a multiple of f={f}")
        grid = (H // f, W // f)
    return fps / t * grid[0] * grid[1]


# ---- synthetic and artwork clips --------------------------------------------------------------------
def moving_square_clip(T: int = 8, S: int = 32, side: int = 8, velocity: tuple[int, int] = (2, 1),
                       colour: tuple[float, float, float] = (1.0, 0.3, 0.1), start: tuple[int, int] = (2, 2)
                       ) -> torch.Tensor:
    """(3, T, S, S) clip in [0, 1]: a coloured square moving by ``velocity`` px per frame on grey, wrapping."""
    x = torch.full((3, T, S, S), 0.5)
    for i in range(T):
        r = (start[0] + velocity[0] * i) % (S - side)
        c = (start[1] + velocity[1] * i) % (S - side)
        x[:, i, r:r + side, c:c + side] = torch.tensor(colour).view(3, 1, 1)
    return x


def pan_zoom_clip(image: torch.Tensor, T: int = 16, S: int = 64, zoom: tuple[float, float] = (1.0, 1.6),
                  pan: tuple[float, float] = (0.0, 0.3)) -> torch.Tensor:
    """(3, T, S, S) clip of a camera panning right and zooming in over ``image`` (3, H, W) in [0, 1].

    Frame i shows a square window of side min(H, W)/z_i centred at horizontal offset p_i (fraction of the
    free width), z and p linear in i from their first to their second value; bilinear resampling to S px.
    """
    _, H, W = image.shape
    frames = []
    for i in range(T):
        a = i / max(1, T - 1)
        z = zoom[0] + (zoom[1] - zoom[0]) * a
        p = pan[0] + (pan[1] - pan[0]) * a
        side = min(H, W) / z
        left = (W - side) * (0.5 + p) if W > side else 0.0
        left = min(max(left, 0.0), W - side)
        top = (H - side) / 2
        # affine grid: the window [left, left+side] × [top, top+side] in normalised coordinates
        sx, sy = side / W, side / H
        tx, ty = (2 * left + side) / W - 1, (2 * top + side) / H - 1
        theta = torch.tensor([[sx, 0.0, tx], [0.0, sy, ty]]).unsqueeze(0)
        grid = F.affine_grid(theta, (1, 3, S, S), align_corners=False)
        frames.append(F.grid_sample(image[None], grid, mode="bilinear", align_corners=False)[0])
    return torch.stack(frames, 1).clamp(0, 1)                        # (3, T, S, S)


# ---- the tokenizer ----------------------------------------------------------------------------------
@dataclass
class VideoVQConfig:
    f: int = 8                                   # spatial downsampling factor
    t: int = 4                                   # temporal downsampling factor (≤ f, both powers of two)
    channels: tuple = (16, 32, 64, 64)           # widths at full res, 1/2, …, 1/f
    codebook_size: int = 256                     # K
    dim: int = 16                                # D, code dimension
    beta: float = 0.25                           # commitment weight
    ema: bool = True                             # EMA codebook

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        Lf, Lt = num_levels(self.f), num_levels(self.t)
        if Lt > Lf:
            raise ValueError(f"temporal factor t={self.t} cannot exceed the spatial factor f={self.f}")


class _Res3d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv3d(c, c // 2, 3, padding=1), nn.ReLU(), nn.Conv3d(c // 2, c, 1))

    def forward(self, x):  # (B, C, T, H, W)
        return x + self.block(x)


class VideoVQ(nn.Module, HubMixin):
    """3-D conv encoder → VectorQuantizer (per latent position) → 3-D conv decoder; tokens (B, T/t, H/f, W/f)."""

    def __init__(self, config: VideoVQConfig = None):
        super().__init__()
        if isinstance(config, dict):
            config = VideoVQConfig(**strip_metadata(config))
        self.config = cfg = config or VideoVQConfig()
        self._hub_mixin_config = cfg
        L, Lt = num_levels(cfg.f), num_levels(cfg.t)
        ch = [cfg.channels[min(i, len(cfg.channels) - 1)] for i in range(L + 1)]
        enc: list[nn.Module] = [nn.Conv3d(3, ch[0], 3, padding=1)]
        dec: list[nn.Module] = []
        for i in range(L):
            st = 2 if i < Lt else 1                                  # time is halved in the first log2 t stages
            k = (4 if st == 2 else 3, 4, 4)
            enc += [nn.Conv3d(ch[i], ch[i + 1], k, stride=(st, 2, 2), padding=1), _Res3d(ch[i + 1])]
            dec = [_Res3d(ch[i + 1]), nn.ReLU(), nn.ConvTranspose3d(ch[i + 1], ch[i], k, stride=(st, 2, 2), padding=1)] + dec
        enc += [nn.ReLU(), nn.Conv3d(ch[L], cfg.dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(nn.Conv3d(cfg.dim, ch[L], 3, padding=1), *dec, nn.ReLU(), nn.Conv3d(ch[0], 3, 3, padding=1))
        self.quantizer = VectorQuantizer(cfg.dim, cfg.codebook_size, beta=cfg.beta, ema=cfg.ema, kmeans_init=False)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip (B, 3, T, H, W), got shape {tuple(x.shape)}")
        video_token_grid(*x.shape[2:], f=self.config.f, t=self.config.t)   # raises on bad sizes

    def forward(self, x: torch.Tensor) -> dict:
        """x (B, 3, T, H, W) in [0, 1] -> dict(x_hat, indices (B, T', h, w), loss, recon)."""
        self._check(x)
        z_e = self.encoder(to_signed(x))                              # (B, D, T', h, w)
        B, _, Tl = z_e.shape[:3]
        q = self.quantizer(rearrange(z_e, "b d t h w -> (b t) d h w"))
        z_q = rearrange(q.z_q, "(b t) d h w -> b d t h w", b=B)
        x_hat = to_unit(self.decoder(z_q))                            # (B, 3, T, H, W)
        recon = F.mse_loss(x_hat, x)
        return {"x_hat": x_hat, "indices": rearrange(q.indices, "(b t) h w -> b t h w", b=B),
                "loss": recon + q.loss, "recon": recon}

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, T, H, W) -> tokens (B, T/t, H/f, W/f)."""
        was = self.training
        self.eval()
        try:
            return self(x)["indices"]
        finally:
            self.train(was)

    @torch.no_grad()
    def decode_indices(self, k: torch.Tensor) -> torch.Tensor:
        """tokens (B, T', h, w) -> x̂ (B, 3, t·T', f·h, f·w) clamped to [0, 1]."""
        B = k.shape[0]
        z_q = self.quantizer.indices_to_codes(rearrange(k.long(), "b t h w -> (b t) h w"))  # (B·T', D, h, w)
        return to_unit(self.decoder(rearrange(z_q, "(b t) d h w -> b d t h w", b=B))).clamp(0, 1)


def fit_clips(model: VideoVQ, clips: torch.Tensor, steps: int = 50, lr: float = 2e-3) -> list[float]:
    """A few Adam steps on a batch of clips (B, 3, T, H, W); returns the loss per step (for notebooks/tests)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        out = model(clips)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        losses.append(float(out["recon"].detach()))
    model.eval()
    return losses


__all__ = ["VideoVQ", "VideoVQConfig", "fit_clips", "latent_frames", "moving_square_clip", "pan_zoom_clip",
           "tokens_per_second", "video_token_grid"]
