"""The one output type every learned quantizer returns (VQ, Gumbel, FSQ, LFQ)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

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
