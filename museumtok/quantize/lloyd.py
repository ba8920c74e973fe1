"""Lloyd-Max / k-means vector quantization (Lloyd 1982; Linde, Buzo & Gray 1980), §4.1 and App. B Alg. 1.

Three ways to fit a codebook {e_k} to vectors z (N, D):

* ``batch``: the classic Lloyd iteration. Assign every vector to its nearest code, move every code
  to the mean of its cell. The distortion never increases from one iteration to the next.
* ``minibatch``: the same on random mini-batches with a running count per code (Sculley 2010), so
  each code is the running mean of everything ever assigned to it.
* ``ema``: the review's Appendix B, Alg. 1, as printed: for every code used in the batch,
  e_k ← γ·e_k + (1−γ)·(Σ_{i: k_i=k} z_i) / (N_k + ε). This is the EMA codebook of VQ-VAE
  without the running counts (see :mod:`museumtok.quantize.vq` for the full form with Laplace
  smoothing).

Codebooks start from k-means++ (Arthur & Vassilvitskii 2007). Distances are computed in chunks as
‖z‖² − 2 z·e + ‖e‖², so memory stays at (chunk, K) whatever N is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm


def nearest(z: torch.Tensor, codebook: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code for each row of ``z``. (N, D), (K, D) -> indices (N,), squared distances (N,)."""
    e2 = codebook.pow(2).sum(1)  # (K,)
    idx = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    d2 = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
    for s in range(0, z.shape[0], chunk):
        zc = z[s : s + chunk]
        d = zc.pow(2).sum(1, keepdim=True) - 2 * zc @ codebook.T + e2  # (n, K)
        v, i = d.min(1)
        idx[s : s + chunk] = i
        d2[s : s + chunk] = v.clamp_min(0)
    return idx, d2


def kmeans_pp_init(z: torch.Tensor, K: int, generator: torch.Generator | None = None, sample: int = 50000) -> torch.Tensor:
    """k-means++ seeding: each next code is drawn with probability ∝ its squared distance to the codes so far."""
    if z.shape[0] > sample:
        z = z[torch.randperm(z.shape[0], generator=generator)[:sample]]
    n = z.shape[0]
    if n < K:
        raise ValueError(f"k-means++ needs at least K={K} vectors, got {n}")
    first = torch.randint(n, (1,), generator=generator)
    centers = [z[first]]
    d2 = (z - z[first]).pow(2).sum(1)
    for _ in range(1, K):
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        j = torch.multinomial(p, 1, generator=generator)
        centers.append(z[j])
        d2 = torch.minimum(d2, (z - z[j]).pow(2).sum(1))
    return torch.cat(centers, 0).clone()


def cell_sums(z: torch.Tensor, codebook: torch.Tensor):
    """The assignment step and what every update needs: (indices (N,), squared distances (N,),
    per-code sums of assigned vectors (K, D), per-code counts (K,))."""
    K, D = codebook.shape
    idx, d2 = nearest(z, codebook)
    sums = torch.zeros(K, D, dtype=z.dtype, device=z.device).index_add_(0, idx, z)
    counts = torch.bincount(idx, minlength=K).to(z.dtype)
    return idx, d2, sums, counts


def lloyd_step(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One batch Lloyd iteration. Returns (new codebook, assignments under the old one, old distortion).

    A code whose cell is empty is moved onto the vector with the largest error, which cannot raise
    the distortion (that vector's error drops to zero, no other vector's error changes).
    """
    idx, d2, sums, counts = cell_sums(z, codebook)
    new = codebook.clone()
    used = counts > 0
    new[used] = sums[used] / counts[used, None]
    empty = torch.nonzero(~used).flatten()
    if len(empty):
        worst = torch.topk(d2, min(len(empty), len(d2))).indices
        new[empty[: len(worst)]] = z[worst]
    return new, idx, float(d2.mean())


def ema_step(z: torch.Tensor, codebook: torch.Tensor, gamma: float = 0.99, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Appendix B, Alg. 1 on one mini-batch: e_k ← γ e_k + (1−γ) Σ_{i:k_i=k} z_i / (N_k + ε) for N_k > 0."""
    idx, _, sums, counts = cell_sums(z, codebook)
    new = codebook.clone()
    used = counts > 0
    new[used] = gamma * codebook[used] + (1 - gamma) * sums[used] / (counts[used, None] + eps)
    return new, idx


def minibatch_step(z: torch.Tensor, codebook: torch.Tensor, totals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sculley's mini-batch k-means: each code is the running mean of all vectors ever assigned to it."""
    idx, _, sums, counts = cell_sums(z, codebook)
    totals = totals + counts
    new = codebook.clone()
    used = counts > 0
    # e_k <- e_k + (Σ z - n_k e_k) / N_k  (the exact running mean)
    new[used] = codebook[used] + (sums[used] - counts[used, None] * codebook[used]) / totals[used, None]
    return new, totals


def distortion(z: torch.Tensor, codebook: torch.Tensor) -> float:
    """Mean squared error per vector (summed over the D dimensions) of quantizing ``z``."""
    return float(nearest(z, codebook)[1].mean())


@dataclass
class LloydResult:
    codebook: torch.Tensor
    history: list[float] = field(default_factory=list)  # distortion per iteration (before its update)
    method: str = "batch"
    iterations: int = 0


def fit_codebook(
    z: torch.Tensor,
    K: int,
    iters: int = 20,
    method: str = "batch",
    batch_size: int = 4096,
    gamma: float = 0.99,
    seed: int = 0,
    init: torch.Tensor | None = None,
    tol: float = 0.0,
    progress: bool = True,
) -> LloydResult:
    """Fit a K-code codebook to ``z`` (N, D) with ``method`` in {"batch", "minibatch", "ema"}.

    ``iters`` counts passes over the data for "batch" and mini-batch steps for the others. The
    history records the full-data distortion for "batch" and the batch distortion otherwise.
    """
    if method not in ("batch", "minibatch", "ema"):
        raise ValueError(f"unknown method {method!r}; choose batch, minibatch or ema")
    g = torch.Generator().manual_seed(seed)
    codebook = kmeans_pp_init(z, K, g) if init is None else init.clone()
    res = LloydResult(codebook, [], method)
    totals = torch.zeros(K, dtype=z.dtype)
    bar = tqdm(range(iters), desc=f"lloyd-{method} K={K}", disable=not progress)
    for it in bar:
        if method == "batch":
            codebook, _, d = lloyd_step(z, codebook)
        else:
            batch = z[torch.randint(z.shape[0], (batch_size,), generator=g)]
            d = distortion(batch, codebook)
            if method == "ema":
                codebook, _ = ema_step(batch, codebook, gamma)
            else:
                codebook, totals = minibatch_step(batch, codebook, totals)
        res.history.append(d)
        res.iterations = it + 1
        bar.set_postfix(distortion=f"{d:.5f}")
        if method == "batch" and it > 0 and tol > 0 and res.history[-2] - d <= tol * res.history[-2]:
            break
    res.codebook = codebook
    return res
