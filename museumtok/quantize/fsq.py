"""Finite scalar quantization (Mentzer, Minnen, Agustsson & Tschannen 2024, "Finite Scalar
Quantization: VQ-VAE Made Simple", ICLR, arXiv:2309.15505). Beyond the review.

No learned codebook: each of d channels is squashed to a bounded range and rounded to one of L_i
integer levels, so the implicit codebook is the grid {levels_1} × … × {levels_d} of
K = Π_i L_i codes; no codebook loss, no commitment loss, no EMA, no dead codes to restart.

Data flow::

    z (B, dim, H, W) ──1×1 conv (if dim ≠ d)──> (B, d, H, W)
        ──bound: f(z) = tanh(z + s)·h − o, h = (L−1)(1−ε)/2, o = ½ if L even, s = tan(o/h)──>
        ──round with STE, ÷ ⌊L/2⌋──> ẑ ∈ [−1, 1]^d ──1×1 conv (if dim ≠ d)──> z_q (B, dim, H, W)
    index k = Σ_i (ẑ_i ⌊L_i/2⌋ + ⌊L_i/2⌋) · Π_{j<i} L_j     (mixed radix, first channel least significant)

The bound follows the paper's Appendix A listing, including its shift s = tan(o/h) (not atanh,
which vector-quantize-pytorch uses; atanh is undefined for L = 2, tan is not, and both map every
level to itself after rounding). Recommended levels from the paper's Table 1: 2^8 → [8, 6, 5],
2^10 → [8, 5, 5, 5], 2^12 → [7, 5, 5, 5, 5], 2^14 → [8, 8, 8, 6, 5], 2^16 → [8, 8, 8, 5, 5, 5].
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from .output import QuantizerOutput, batch_stats, implicit_codes


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """round(z) forward, identity gradient."""
    return z.round().detach() + (z - z.detach())


class FSQ(nn.Module):
    """Finite scalar quantizer with ``levels`` L_1..L_d per channel.

    Args:
        levels: number of levels of each of the d quantized channels (each ≥ 2).
        dim: channels of the input and output; a 1×1 convolution projects dim → d and back when
            they differ (default d).
        eps: ε of the bound, keeps tanh(·)·h strictly inside the outer rounding boundary.
    """

    def __init__(self, levels: Sequence[int], dim: int | None = None, eps: float = 1e-3):
        super().__init__()
        levels = [int(L) for L in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"levels must be a non-empty list of integers >= 2, got {levels}")
        self.levels = levels
        self.d = len(levels)
        self.dim = dim or self.d
        self.eps = eps
        self.codebook_size = math.prod(levels)
        L = torch.tensor(levels, dtype=torch.float64)
        self.register_buffer("_levels", L.float(), persistent=False)
        self.register_buffer("_basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0), persistent=False)
        self.register_buffer("_half_width", (L // 2).float(), persistent=False)
        half_l = (L - 1) * (1 - eps) / 2
        offset = torch.where(L % 2 == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", torch.tan(offset / half_l).float(), persistent=False)
        self.project_in = nn.Conv2d(self.dim, self.d, 1) if self.dim != self.d else nn.Identity()
        self.project_out = nn.Conv2d(self.d, self.dim, 1) if self.dim != self.d else nn.Identity()

    def extra_repr(self) -> str:
        return f"levels={self.levels}, dim={self.dim}, codebook_size={self.codebook_size}"

    # -- the scalar quantizer on channel-last tensors (..., d) ------------------------------------
    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) = tanh(z + s)·h − o, channel-last (..., d); rounds onto the L_i levels."""
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """ẑ = round_ste(f(z)) / ⌊L/2⌋ ∈ [−1, 1], channel-last (..., d)."""
        return round_ste(self.bound(z)) / self._half_width

    def codes_to_indices(self, z_hat: torch.Tensor) -> torch.Tensor:
        """ẑ (..., d) on the grid -> index (...,) int64."""
        digits = (z_hat * self._half_width + self._half_width).round().long()        # (..., d) in [0, L_i)
        return (digits * self._basis).sum(-1)

    def indices_to_grid(self, indices: torch.Tensor) -> torch.Tensor:
        """index (...,) -> ẑ (..., d) in [−1, 1], before project_out."""
        digits = (indices.long()[..., None] // self._basis) % self._levels.long()     # (..., d)
        return (digits - self._half_width) / self._half_width

    @property
    def implicit_codebook(self) -> torch.Tensor:
        """All K grid points ẑ, (K, d), in index order."""
        return self.indices_to_grid(torch.arange(self.codebook_size, device=self._basis.device))

    # -- module API -------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected z of shape (B, {self.dim}, H, W), got {tuple(z.shape)}")
        z = self.project_in(z)                                                       # (B, d, H, W)
        # contiguous in (B, H, W, d) like indices_to_codes builds the codes: project_out then sees the same
        # memory layout (same kernel) on both paths, so the two agree bitwise
        z_hat = self.quantize(rearrange(z, "b d h w -> b h w d")).contiguous()      # (B, H, W, d)
        indices = self.codes_to_indices(z_hat.detach())                              # (B, H, W)
        z_q = self.project_out(rearrange(z_hat, "b h w d -> b d h w"))               # (B, dim, H, W)
        return QuantizerOutput(z_q=z_q, indices=indices, loss=z.new_zeros(()), losses={},
                               stats=batch_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B, dim, H, W), or (N,) -> (N, dim); the same values forward() outputs."""
        return implicit_codes(indices, self.codebook_size, self.indices_to_grid, self.project_out)
