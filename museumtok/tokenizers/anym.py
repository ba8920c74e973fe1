"""anym: any number of 1-D tokens from one model — Perceiver Resampler latents, FSQ, nested dropout.

The image becomes an ordered sequence of M_max tokens; the first M of them decode to the whole
image for every M in 1..M_max (coarse first, detail later), so M is a slider, not a menu. See
:mod:`museumtok.models.anym` for the model and its papers.

    image ──working crop S×S──▶ x ──Encoder + PerceiverResampler + FSQ──▶ k (M_max,) ──keep k[:M]──▶ tokens
    k[:M] ──query-grid resampler (reads M tokens) + Decoder──▶ x̂ (3, S, S)

A token is not tied to a patch: each one's ``box`` is the whole working crop, and
:meth:`AnyMTokenizer.attention_maps` shows where its latent looked (``t.meta["attention"]``).
"""
from __future__ import annotations


import torch
from einops import rearrange

from ..data.images import ImageLike
from ..models.anym import AnyMAutoencoder
from .base import ModelTokenizer, TokenizedImage


class AnyMTokenizer(ModelTokenizer):
    """Wraps an :class:`AnyMAutoencoder`; M is any whole number from 1 to M_max."""

    model_cls = AnyMAutoencoder

    @property
    def K(self) -> int:
        return self.model.codebook_size

    @property
    def supported_M(self) -> tuple[int, ...]:
        return tuple(range(1, self.model.max_tokens + 1))

    @property
    def default_M(self) -> int:
        return min(32, self.model.max_tokens)

    def working_size(self, M: int) -> int:
        return self.model.config.image_size

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor, M: int) -> torch.Tensor:
        return self.model.encode_indices(x.float(), M)                      # (B, M)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, M: int | None = None) -> torch.Tensor:
        return self.model.decode_indices(indices.long().reshape(indices.shape[0], -1))  # (B, 3, S, S)

    def token_boxes(self, indices_shape, size: int) -> torch.Tensor:
        """1-D tokens: each token covers the whole working crop."""
        M = int(torch.tensor(indices_shape).prod())
        return torch.tensor([[0.0, 0.0, float(size), float(size)]]).repeat(M, 1)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, M: int | None = None, layer: int = -1) -> torch.Tensor:
        """x (B, 3, S, S) -> (B, M, S/f, S/f): each of the first M latents' attention over the patch
        grid in the encoding resampler (``layer``), averaged over heads, each map summing to 1."""
        out = self.model.encode_latents(x.float(), return_attention=True)
        a = out.patch_attention(layer)[:, : (M or self.model.max_tokens)]    # (B, M, N)
        return rearrange(a, "b m (h w) -> b m h w", h=self.model.config.grid)

    @torch.no_grad()
    def encode(self, image: ImageLike, M: int | None = None) -> TokenizedImage:
        t = super().encode(image, M)
        t.meta["attention"] = self.attention_maps(t.working.x.unsqueeze(0), t.M)[0]  # (M, S/f, S/f)
        return t
