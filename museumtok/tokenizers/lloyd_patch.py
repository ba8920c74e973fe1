"""lloyd-patch: Lloyd-Max / k-means vector quantization of p×p RGB patches (§4.1 on real images).

Every non-overlapping p×p patch of the working image is one token: the index of its nearest
codeword in a codebook fitted with k-means++ and Lloyd iterations (Appendix B, Alg. 1) on patches
of the training artworks. M is set by the working resolution: with p = 8, a 64 px image gives
8×8 = 64 tokens, 128 px gives 256 and 256 px gives 1024. No network is involved, so this is the
baseline every learned tokenizer must beat.

    image (3, S, S) ──patchify──▶ z (S/p · S/p, 3p²) ──nearest e_k──▶ k (S/p, S/p)
    k ──e_k──▶ ẑ ──unpatchify──▶ x̂ (3, S, S)
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..checkpoint import HubMixin
from ..quantize.lloyd import nearest
from .base import Tokenizer


class LloydPatchTokenizer(nn.Module, Tokenizer, HubMixin):
    def __init__(self, K: int = 1024, patch: int = 8, sizes: tuple[int, ...] | list[int] = (64, 128, 256)):
        super().__init__()
        self.k_codes = int(K)          # codebook size K
        self.patch = int(patch)        # patch side p in pixels
        self.sizes = tuple(int(s) for s in sizes)  # working image sides S; M = (S/p)²
        # (K, 3·p·p) codewords in [0, 1] pixel space
        self.register_buffer("codebook", torch.rand(self.k_codes, 3 * self.patch**2))

    @property
    def K(self) -> int:
        return self.k_codes

    @property
    def supported_M(self) -> tuple[int, ...]:
        return tuple((s // self.patch) ** 2 for s in self.sizes)

    def working_size(self, M: int) -> int:
        return dict(zip(self.supported_M, self.sizes))[M]

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3, S, S) -> (B, h, w, 3·p·p)
        return rearrange(x, "b c (h p1) (w p2) -> b h w (c p1 p2)", p1=self.patch, p2=self.patch)

    def unpatchify(self, z: torch.Tensor) -> torch.Tensor:
        # (B, h, w, 3·p·p) -> (B, 3, S, S)
        return rearrange(z, "b h w (c p1 p2) -> b c (h p1) (w p2)", c=3, p1=self.patch, p2=self.patch)

    def encode_tensor(self, x: torch.Tensor, M: int | None = None) -> torch.Tensor:
        z = self.patchify(x.float())                       # (B, h, w, D)
        b, h, w, d = z.shape
        idx, _ = nearest(z.reshape(-1, d), self.codebook)  # (B·h·w,)
        return idx.view(b, h, w)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, h, w, 3·p·p) codewords."""
        return self.codebook[indices.long()]

    def decode_indices(self, indices: torch.Tensor, M: int | None = None) -> torch.Tensor:
        return self.unpatchify(self.indices_to_codes(indices)).clamp(0, 1)
