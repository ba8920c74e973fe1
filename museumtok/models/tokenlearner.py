"""TokenLearner (Ryoo, Piergiovanni, Arnab, Dehghani & Angelova 2021, "TokenLearner: What Can 8
Learned Tokens Do for Images and Videos?", NeurIPS 2021, arXiv:2106.11297), §10 of the review.

Instead of M learned *queries* that attend over the patches (the Perceiver Resampler of
:mod:`museumtok.models.resampler`), TokenLearner computes M *spatial attention maps* directly from
the feature map with a small convolutional network, one map per output token, and pools the
features with each map. Tokens are therefore data-dependent weighted averages of the input: token i
is Σ_p α_i(p) · v(p), where α_i is a softmax over the N positions p (the maps of the paper's
TokenLearner v1.1; v1 used a sigmoid and a spatial mean instead). With M = 8 such tokens the paper
matches ViTs that keep hundreds of patch tokens.

Data flow (d = ``dim``, N = h·w positions, M = ``num_tokens``)::

    x_f (B, N, d) ──LN──▶ (B, d, h, w) ──Conv k×k ─▶ GELU ─▶ Conv 1×1──▶ logits (B, M, h, w)
                                                         softmax over the N positions ─▶ α (B, M, N)
    x_f (B, N, d) ──LN──▶ Linear (the feature transform v) ──▶ v (B, N, d)
    tokens = α v   (B, M, N) @ (B, N, d) ─▶ (B, M, d)          each row of α sums to 1

Differences from the resampler, at the same M: TokenLearner sees the positions through its
convolution (it needs the grid shape; the resampler treats its inputs as a set), computes every map
in one shot instead of by iterated attention, and its tokens are convex combinations of the
(transformed) features; the resampler's latents also mix in a learned query and feed-forward blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn


@dataclass
class TokenLearnerOutput:
    latents: torch.Tensor      # (B, M, d) the learned tokens
    maps: torch.Tensor         # (B, M, N) spatial attention of each token over the N positions (rows sum to 1)

    def spatial_maps(self, h: int, w: int | None = None) -> torch.Tensor:
        """The maps as images, (B, M, h, w)."""
        return rearrange(self.maps, "b m (h w) -> b m h w", h=h, w=w or self.maps.shape[-1] // h)


class TokenLearner(nn.Module):
    """N features on an h×w grid in, M tokens out, each a softmax-weighted spatial pool.

    Args:
        dim: width d of the input features and of the tokens.
        num_tokens: M, the number of tokens (the paper: 8 or 16).
        hidden: channels of the attention network's hidden layer (default d).
        kernel_size: the first convolution's kernel (1 gives the paper's per-position MLP).
        feature_transform: a linear map v applied to the features before pooling (v1.1); False pools
            the normalised features themselves.
    """

    def __init__(self, dim: int, num_tokens: int, hidden: int | None = None, kernel_size: int = 3,
                 feature_transform: bool = True):
        super().__init__()
        hidden = hidden or dim
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size, padding=kernel_size // 2), nn.GELU(),
            nn.Conv2d(hidden, num_tokens, 1),
        )
        self.values = nn.Linear(dim, dim) if feature_transform else nn.Identity()

    def attention_maps(self, x_f: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """x_f (B, N, d) -> α (B, M, N), a softmax over the N positions for each token."""
        h, w = _grid(x_f.shape[1], grid)
        img = rearrange(self.norm(x_f), "b (h w) d -> b d h w", h=h, w=w)
        logits = self.attention(img)                                         # (B, M, h, w)
        return rearrange(logits, "b m h w -> b m (h w)").softmax(-1)

    def forward(self, x_f: torch.Tensor, grid: tuple[int, int] | None = None) -> TokenLearnerOutput:
        """x_f (B, N, d) on a ``grid`` (h, w) (default: square) -> TokenLearnerOutput."""
        if x_f.dim() != 3:
            raise ValueError(f"expected features of shape (B, N, d), got {tuple(x_f.shape)}")
        a = self.attention_maps(x_f, grid)                                   # (B, M, N)
        v = self.values(self.norm(x_f))                                      # (B, N, d)
        return TokenLearnerOutput(torch.einsum("bmn,bnd->bmd", a, v), a)


def _grid(n: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    if grid is not None:
        h, w = grid
        if h * w != n:
            raise ValueError(f"grid {grid} does not hold {n} positions")
        return h, w
    s = math.isqrt(n)
    if s * s != n:
        raise ValueError(f"{n} positions are not a square grid: pass grid=(h, w)")
    return s, s
