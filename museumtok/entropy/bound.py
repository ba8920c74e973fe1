"""A lower bound whose gradient still lifts values from under it (the reference implementations' ``LowerBound``).

``lower_bound(x, b)`` is ``max(x, b)`` in the forward pass. A plain ``clamp_min`` would give zero gradient
to every x < b, so a scale σ or a likelihood stuck under its floor could never come back up: in a scale
hyperprior, h_s's last ReLU puts many σ at 0 at initialisation, their gradient dies at the 0.11 floor,
σ stops depending on ẑ and the hyper-latent collapses to carrying nothing (z costs 0 bits). Here the
gradient passes wherever x ≥ b or wherever it would raise x (g < 0 for gradient descent), as in
Ballé's tensorflow_compression and CompressAI (``compressai.ops.LowerBound``).
"""
from __future__ import annotations

import torch


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (g < 0)
        return g * pass_through.to(g.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound), with the gradient that can still raise an x under the bound."""
    return _LowerBound.apply(x, bound)
