"""Tokenizers as codecs: token indices entropy-coded with a unigram prior (§3.3, §5).

A tokenizer's M indices cost M·log2 K bits when sent as fixed-length codes. With a prior P(k) fitted on
the training split, a range coder sends them in about −Σ log2 P(k_i) bits instead (the unigram
entropy of the codebook usage, ≤ log2 K), which puts tokenizers on the same rate axis as codecs.

    indices (M,) ──range coder, one integer table of K + 1 symbols──▶ bytes
"""
from __future__ import annotations

import numpy as np
import torch

from .coding import TableDecoder, TableEncoder, pack_tables, quantize_pmf, table_bits


class UnigramPrior:
    """P(k) ∝ count_k + α over the K codes, frozen into one integer table."""

    def __init__(self, counts: np.ndarray, alpha: float = 0.5):
        counts = np.asarray(counts, np.float64)
        self.K = len(counts)
        self.counts = counts
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


def prior_for(tok, M: int, split: str = "artworks-train", cache: bool = True) -> UnigramPrior:
    """The unigram prior of tokenizer ``tok`` at M, fitted on the centre working crops of a split.

    Counts are cached in ``~/.cache/museumtok/unigram/`` keyed by the tokenizer's name, M and the
    checkpoint's modification time, so the first call fits and later calls only read.
    """
    from .. import registry
    from ..data.dataset import eval_batch
    from ..paths import cache_dir

    name = getattr(tok, "name", type(tok).__name__)
    stamp = ""
    try:
        ck = registry.get(name).checkpoint_path
        if ck is not None and (ck / "model.safetensors").exists():
            stamp = str(int((ck / "model.safetensors").stat().st_mtime))
    except KeyError:
        pass
    path = cache_dir("unigram") / f"{name}-M{M}-{split}-{stamp}.npy"
    if cache and path.exists():
        return UnigramPrior(np.load(path))
    S = tok.working_size(M)
    x, _ = eval_batch(split, S)
    with torch.no_grad():
        idx = torch.cat([tok.encode_tensor(x[i : i + 16], M).reshape(-1) for i in range(0, len(x), 16)])
    prior = UnigramPrior.fit(idx, tok.K)
    if cache:
        np.save(path, prior.counts)
    return prior
