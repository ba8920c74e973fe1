"""multiscale: 64 coarse tokens, or 64 coarse + 256 fine residual tokens (§5.5).

See :mod:`museumtok.models.multiscale` for the model. The token sequence is the 8×8 coarse grid
(16 px cells of a 128 px working image, row-major) followed, for M = 320, by the 16×16 fine grid
(8 px cells); ``TokenizedImage.levels`` says which level each token belongs to.

    image ──working crop 128²──▶ x ──Encoder──▶ coarse k₁ (64,) ─┬─▶ M = 64
                                        fine residual k₂ (256,) ──┴─▶ M = 320 = [k₁; k₂]
"""
from __future__ import annotations


import torch

from ..models.multiscale import MultiScaleAutoencoder
from .base import ModelTokenizer


class MultiScaleTokenizer(ModelTokenizer):
    """Wraps a :class:`MultiScaleAutoencoder`; M ∈ {coarse, coarse + fine} = {64, 320}."""

    model_cls = MultiScaleAutoencoder

    @property
    def n_coarse(self) -> int:
        return self.model.config.coarse_grid**2

    @property
    def n_fine(self) -> int:
        return self.model.config.fine_grid**2

    @property
    def K(self) -> int:
        return self.model.codebook_size

    @property
    def supported_M(self) -> tuple[int, ...]:
        return (self.n_coarse, self.n_coarse + self.n_fine)

    @property
    def default_M(self) -> int:
        return self.supported_M[-1]

    def working_size(self, M: int) -> int:
        return self.model.config.image_size

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor, M: int) -> torch.Tensor:
        return self.model.encode_indices(x, fine=M > self.n_coarse)        # (B, M)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, M: int | None = None) -> torch.Tensor:
        return self.model.decode_indices(indices.reshape(indices.shape[0], -1))

    def token_boxes(self, indices_shape, size: int) -> torch.Tensor:
        """Coarse tokens cover size/8-px cells, fine tokens size/16-px cells, each level row-major."""
        M = int(torch.tensor(indices_shape).prod())
        c, f = self.model.config.coarse_grid, self.model.config.fine_grid
        boxes = [super().token_boxes((c, c), size)]
        if M > c * c:
            boxes.append(super().token_boxes((f, f), size))
        return torch.cat(boxes)

    def token_levels(self, M: int) -> list[str]:
        return ["coarse"] * self.n_coarse + (["fine"] * self.n_fine if M > self.n_coarse else [])
