"""The one output type every learned quantizer returns (VQ, Gumbel, FSQ, LFQ)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange

from ..metrics.codebook import codebook_stats


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor                 # (B, D, H, W) quantized, straight-through gradient to the input
    indices: torch.Tensor             # (B, H, W) int64
    loss: torch.Tensor                # scalar: the weighted sum of the auxiliary terms in `losses` (0 if none)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # unweighted terms, e.g. {"codebook", "commitment"}
    stats: dict[str, float] = field(default_factory=dict)          # {"perplexity", "usage", "dead_codes"} over this batch


def batch_stats(indices: torch.Tensor, K: int) -> dict[str, float]:
    """Codebook health over one batch of ``indices``: perplexity exp(H(p̂)), usage (used/K), dead codes (K − used)."""
    with torch.no_grad():
        return stats_from_counts(torch.bincount(indices.reshape(-1).long(), minlength=K)[:K], K)


def stats_from_counts(counts: torch.Tensor, K: int) -> dict[str, float]:
    """The same from a (K,) count vector, via :func:`museumtok.metrics.codebook.codebook_stats`."""
    s = codebook_stats(counts.detach(), K, counts=True)
    return {"perplexity": s.perplexity, "usage": s.usage, "dead_codes": float(s.dead)}


def implicit_codes(indices: torch.Tensor, K: int, to_vectors, project_out) -> torch.Tensor:
    """``indices_to_codes`` of a quantizer whose codes are computed from the index (FSQ, LFQ).

    ``to_vectors`` maps (…) indices to (…, d) code vectors; ``project_out`` maps (B, d, H, W) to the
    output width. (B, H, W) -> (B, dim, H, W), or (N,) -> (N, dim); the same values forward() outputs.
    """
    indices = indices.long()
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= K):
        raise IndexError(f"indices must lie in [0, {K}), got range [{int(indices.min())}, {int(indices.max())}]")
    if indices.dim() == 1:
        grid = rearrange(to_vectors(indices), "n d -> 1 d 1 n")
        return rearrange(project_out(grid), "1 d 1 n -> n d")
    if indices.dim() == 3:
        return project_out(rearrange(to_vectors(indices), "b h w d -> b d h w"))
    raise ValueError(f"indices must be (B, H, W) or (N,), got shape {tuple(indices.shape)}")


def marginal_kl_to_uniform(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """KL(q̄ ‖ U(K)) of the batch's average posterior q̄ = mean over positions of softmax(ℓ) (nats).

    Zero when the batch spreads its probability evenly over the K codes, log K when every position puts
    it on one code. The per-position KL (:func:`museumtok.quantize.gumbel.kl_to_uniform`, DALL·E's ELBO term) can be small while
    every position prefers the same few codes; this term sees the codebook's usage directly (the batch
    entropy H(E[q]) of MAGVIT-v2's LFQ entropy loss, Yu et al. 2024, arXiv:2310.05737, written as a KL).
    """
    q_bar = F.softmax(logits, dim=dim).movedim(dim, -1).reshape(-1, logits.shape[dim]).mean(0)   # (K,)
    return (q_bar * (q_bar.clamp_min(1e-12).log() + math.log(logits.shape[dim]))).sum()
