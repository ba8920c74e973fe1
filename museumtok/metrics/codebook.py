"""Codebook health: usage, entropy, perplexity and dead codes (§4.3, §9.3).

Perplexity is exp(H(p̂)) with p̂ the empirical frequency of each code: K under perfectly uniform
use, 1 under total collapse. (The formula printed in the review's §4.3,
exp((1/N)Σ log K − H(k_i)), is garbled: it mixes a per-sample sum with the entropy of the whole
distribution and does not give K for uniform use; §3.3's exp(−Σ p̂ log p̂) is the right one.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def code_counts(indices: torch.Tensor, K: int) -> torch.Tensor:
    """How often each of the K codes occurs in ``indices`` (any shape), shape (K,)."""
    return torch.bincount(indices.reshape(-1).long(), minlength=K)[:K]


def entropy_bits(counts: torch.Tensor) -> float:
    """Shannon entropy H(p̂) in bits of the empirical distribution given by ``counts``."""
    p = counts.double() / counts.sum().clamp_min(1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def perplexity(indices_or_counts: torch.Tensor, K: int | None = None) -> float:
    """exp(H(p̂)) with H in nats. Pass indices with ``K``, or a (K,) count vector without."""
    counts = indices_or_counts if K is None else code_counts(indices_or_counts, K)
    return float(2.0 ** entropy_bits(counts))


def dead_codes(counts: torch.Tensor, threshold: int = 0) -> torch.Tensor:
    """Indices of codes used at most ``threshold`` times."""
    return torch.nonzero(counts <= threshold).flatten()


@dataclass(frozen=True)
class CodebookStats:
    K: int
    n: int                 # number of token occurrences counted
    used: int              # codes used at least once
    usage: float           # used / K
    entropy_bits: float    # H(p̂) in bits
    perplexity: float      # exp(H(p̂)) = 2**entropy_bits
    dead: int              # K - used

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def codebook_stats(indices_or_counts: torch.Tensor, K: int, counts: bool = False) -> CodebookStats:
    c = indices_or_counts if counts else code_counts(indices_or_counts, K)
    used = int((c > 0).sum())
    h = entropy_bits(c)
    return CodebookStats(K=K, n=int(c.sum()), used=used, usage=used / K, entropy_bits=h,
                         perplexity=2.0**h, dead=K - used)
