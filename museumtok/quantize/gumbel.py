"""Gumbel-softmax quantizer of the dVAE (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation",
ICML, arXiv:2102.12092), with the Gumbel-softmax / Concrete relaxation of Jang, Gu & Poole (2017,
arXiv:1611.01144) and Maddison, Mnih & Teh (2017, arXiv:1611.00712); §4.4 and Appendix B, Alg. 3.

Data flow (one position of the grid)::

    h (B, C_in, H, W) ──1×1 conv──> logits ℓ (B, K, H, W)
        ──g = −log(−log U), w = softmax((ℓ + g) / τ)──> w (B, K, H, W)        (Alg. 3)
        ──hard: one_hot(argmax w) + w − sg[w]──> (straight-through, optional)
        ──z_q = Σ_k w_k e_k──> (B, dim, H, W)
    KL(q ‖ uniform) = Σ_k q_k log(K q_k),  q = softmax(ℓ)     (the prior term of the dVAE ELBO)

In training a token is sampled (argmax of the perturbed logits); in eval mode the quantizer is
deterministic: the token is argmax ℓ and z_q its code. τ is annealed during training
(:func:`tau_schedule`); DALL·E went from 1 to 1/16.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from .output import QuantizerOutput, marginal_kl_to_uniform, stats_from_counts  # noqa: F401 (re-exported)
from .vq import indices_to_codes


def sample_gumbel(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """g = −log(−log U), U ~ Uniform(0, 1) (Alg. 3), with U kept inside (0, 1)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False, dim: int = 1,
                   g: torch.Tensor | None = None) -> torch.Tensor:
    """softmax((ℓ + g) / τ) along ``dim``; ``hard`` returns the exact one-hot of its argmax with the
    soft sample's gradient (straight-through). ``g`` (Gumbel noise, same shape) is drawn if not given."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if g is None:
        g = sample_gumbel(logits.shape, device=logits.device, dtype=logits.dtype)
    w = F.softmax((logits + g) / tau, dim=dim)
    if not hard:
        return w
    one_hot = torch.zeros_like(w).scatter_(dim, w.argmax(dim, keepdim=True), 1.0)
    return one_hot + (w - w.detach())  # w − sg[w] is exactly 0 forward, so the one-hot is exact


def kl_to_uniform(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """KL(softmax(ℓ) ‖ U(K)) = Σ_k q_k log(K q_k), averaged over every other position (nats)."""
    log_q = F.log_softmax(logits, dim=dim)
    K = logits.shape[dim]
    return (log_q.exp() * (log_q + math.log(K))).sum(dim).mean()


def tau_schedule(step: int, tau_start: float = 1.0, tau_end: float = 1.0 / 16, steps: int = 10000,
                 kind: str = "exponential") -> float:
    """τ at ``step``: from ``tau_start`` to ``tau_end`` over ``steps`` steps, constant afterwards.

    ``exponential``: τ = τ_start (τ_end/τ_start)^(t/T); ``cosine``: τ_end + (τ_start − τ_end)(1 + cos(π t/T))/2
    (DALL·E annealed τ from 1 to 1/16); ``linear``.
    """
    if tau_start <= 0 or tau_end <= 0:
        raise ValueError(f"temperatures must be positive, got tau_start={tau_start}, tau_end={tau_end}")
    t = min(max(step, 0) / max(steps, 1), 1.0)
    if kind == "exponential":
        return tau_start * (tau_end / tau_start) ** t
    if kind == "cosine":
        return tau_end + (tau_start - tau_end) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "linear":
        return tau_start + (tau_end - tau_start) * t
    raise ValueError(f"unknown schedule kind {kind!r}; choose 'exponential', 'cosine' or 'linear'")


class GumbelQuantizer(nn.Module):
    """Logits → Gumbel-softmax over K codes → weighted sum of codes, with the KL to the uniform prior.

    Args:
        in_channels: C_in of the encoder output h.
        codebook_size: K.
        dim: D of each code (channels of z_q).
        tau: Gumbel-softmax temperature τ (settable attribute; anneal it with :func:`tau_schedule`).
        kl_weight: weight of the KL term in ``loss`` (the dVAE's β of the ELBO).
        hard: straight-through (exactly one-hot forward, soft gradient) instead of the soft mixture. Off by
            default: DALL·E's dVAE (Ramesh et al. 2021) trains on the relaxed sample; encoding always takes the argmax.
        usage_weight: weight of :func:`marginal_kl_to_uniform` (the batch's code usage against uniform); 0, the
            default, is DALL·E's loss. Not in the paper: an anti-collapse term (see benchmarks/dvae_usage.py).
    """

    def __init__(self, in_channels: int, codebook_size: int, dim: int, tau: float = 1.0, kl_weight: float = 5e-4,
                 hard: bool = False, usage_weight: float = 0.0):
        super().__init__()
        if min(in_channels, codebook_size, dim) < 1:
            raise ValueError(f"in_channels, codebook_size and dim must be positive, got {in_channels}, {codebook_size}, {dim}")
        self.in_channels, self.codebook_size, self.dim = in_channels, codebook_size, dim
        self.tau, self.kl_weight, self.hard = tau, kl_weight, hard
        self.usage_weight = usage_weight                                                 # weight of KL(q̄ ‖ U(K))
        self.proj = nn.Conv2d(in_channels, codebook_size, 1)                           # h -> ℓ
        self.embedding = nn.Parameter(torch.randn(codebook_size, dim))                 # e (K, D)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding

    def extra_repr(self) -> str:
        return f"codebook_size={self.codebook_size}, dim={self.dim}, tau={self.tau}, kl_weight={self.kl_weight}, hard={self.hard}"

    def forward(self, h: torch.Tensor) -> QuantizerOutput:
        if h.dim() != 4 or h.shape[1] != self.in_channels:
            raise ValueError(f"expected h of shape (B, {self.in_channels}, H, W), got {tuple(h.shape)}")
        logits = self.proj(h)                                                           # (B, K, H, W)
        if self.training:
            w = gumbel_softmax(logits, self.tau, hard=self.hard, dim=1)                 # (B, K, H, W)
            k = w.detach().argmax(1)                                                    # (B, H, W)
        else:
            k = logits.argmax(1)
            w = F.one_hot(k, self.codebook_size).to(logits.dtype)
            w = rearrange(w, "b h w k -> b k h w")
        z_q = einsum(w, self.embedding, "b k h w, k d -> b d h w")                      # (B, D, H, W)
        kl = kl_to_uniform(logits, dim=1)
        counts = torch.bincount(k.reshape(-1), minlength=self.codebook_size)
        loss, losses = self.kl_weight * kl, {"kl": kl}
        if self.usage_weight:
            losses["usage_kl"] = marginal_kl_to_uniform(logits, dim=1)
            loss = loss + self.usage_weight * losses["usage_kl"]
        return QuantizerOutput(z_q=z_q, indices=k, loss=loss, losses=losses,
                               stats=stats_from_counts(counts, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes e_k for ``indices``: (B, H, W) -> (B, D, H, W), or (N,) -> (N, D)."""
        return indices_to_codes(indices, self.embedding, self.codebook_size)
