"""Tokenizers as codecs: token indices entropy-coded with a unigram prior (§3.3, §5).

A tokenizer's M indices cost M·log2 K bits when sent as fixed-length codes. With a prior P(k) fitted on
the training split, a range coder sends them in about −Σ log2 P(k_i) bits instead (the unigram
entropy of the codebook usage, ≤ log2 K), which puts tokenizers on the same rate axis as codecs.

    indices (M,) ──range coder, one integer table of K + 1 symbols──▶ bytes

This module is the maths only: the prior from counts, its bits, the coder, and a small JSON file of
counts per token count M (``save_priors`` / ``load_priors``). Fitting the counts on a dataset split
with a tokenizer lives one layer up, in :mod:`museumtok.tokenizers.prior`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .coding import TableDecoder, TableEncoder, pack_tables, quantize_pmf, table_bits


class UnigramPrior:
    """P(k) ∝ count_k + α over the K codes, frozen into one integer table."""

    def __init__(self, counts: np.ndarray, alpha: float = 0.5):
        counts = np.asarray(counts, np.float64)
        self.K = len(counts)
        self.counts = counts                               # (K,) code counts of the fitting set
        self.alpha = float(alpha)                          # additive smoothing: unseen codes stay codable
        p = (counts + alpha) / (counts.sum() + alpha * self.K)
        self.table, self.length, self.offset = pack_tables([quantize_pmf(p, tail=0.0)], [0])

    @classmethod
    def fit(cls, indices: torch.Tensor | np.ndarray, K: int, alpha: float = 0.5) -> "UnigramPrior":
        idx = np.asarray(indices).ravel().astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= K):
            raise ValueError(f"indices must lie in [0, {K})")
        return cls(np.bincount(idx, minlength=K), alpha)

    def entropy_bits(self) -> float:
        """Bits per token of the fitted distribution (its cross-entropy with itself)."""
        f = self.table[0, : self.K].astype(np.float64)
        p = f / f.sum()
        return float(-(p * np.log2(p)).sum())

    def bits(self, indices) -> float:
        idx = np.asarray(indices).ravel().astype(np.int64)
        return table_bits(self.table, self.length, self.offset, idx, np.zeros_like(idx))

    def encode(self, indices) -> bytes:
        idx = np.asarray(indices).ravel().astype(np.int64)
        enc = TableEncoder()
        enc.encode(idx, np.zeros_like(idx), self.table, self.length, self.offset)
        return np.asarray(enc.words(), dtype="<u4").tobytes()

    def decode(self, data: bytes, n: int) -> np.ndarray:
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        return TableDecoder(words).decode(np.zeros(n, np.int64), self.table, self.length, self.offset)


PRIOR_FORMAT = "museumtok-unigram-counts/1"


def save_priors(path: str | Path, priors: dict[int, UnigramPrior], **meta) -> Path:
    """Write the counts of one prior per M as JSON: ``{"format", "K", "alpha", "counts": {"M": [K ints]}, **meta}``.

    Only integer counts are stored (K per M); the integer table is rebuilt from them on load, by the same
    deterministic :func:`~museumtok.entropy.coding.quantize_pmf`, so coder and decoder agree bit for bit.
    """
    if not priors:
        raise ValueError("no priors to save")
    Ks = {p.K for p in priors.values()}
    alphas = {p.alpha for p in priors.values()}
    if len(Ks) != 1 or len(alphas) != 1:
        raise ValueError("all priors of one file share K and alpha")
    counts = {}
    for M, p in sorted(priors.items()):
        c = np.asarray(p.counts)
        if not np.array_equal(c, np.round(c)) or c.min() < 0:
            raise ValueError(f"counts at M={M} must be non-negative integers")
        counts[str(int(M))] = [int(v) for v in c]
    doc = {"format": PRIOR_FORMAT, "K": Ks.pop(), "alpha": alphas.pop(), **meta, "counts": counts}
    path = Path(path)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def load_priors(path: str | Path) -> tuple[dict[int, UnigramPrior], dict]:
    """Read a :func:`save_priors` file -> ({M: prior}, the file's other fields: K, alpha, split, ...)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("format") != PRIOR_FORMAT:
        raise ValueError(f"{path}: not a {PRIOR_FORMAT} file (format {doc.get('format')!r})")
    K, alpha = int(doc["K"]), float(doc["alpha"])
    priors = {}
    for M, c in doc.pop("counts").items():
        if len(c) != K:
            raise ValueError(f"{path}: M={M} has {len(c)} counts, expected K={K}")
        priors[int(M)] = UnigramPrior(np.asarray(c, np.int64), alpha)
    return priors, doc
