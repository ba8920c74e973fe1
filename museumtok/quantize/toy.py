"""Small 2-D toy problems for watching a codebook learn (notebook 04_2, tests).

``ring_clusters`` draws points from K tight clusters on a circle; ``fit_codebook_stream`` trains a
:class:`~museumtok.quantize.vq.VectorQuantizer` directly on such a stream (no encoder: z_e is the
data), by its codebook loss with SGD or by its EMA, and records usage, perplexity, distortion and
codebook snapshots at every step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .vq import VectorQuantizer, nearest_code


def ring_clusters(n: int, clusters: int = 16, radius: float = 5.0, noise: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """n points (n, 2) from ``clusters`` Gaussian blobs of std ``noise`` evenly spaced on a circle."""
    angles = torch.arange(clusters) * (2 * math.pi / clusters)
    centers = radius * torch.stack([angles.cos(), angles.sin()], 1)
    return centers[torch.randint(clusters, (n,), generator=generator)] + noise * torch.randn(n, 2, generator=generator)


def as_grid(z: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors -> (1, D, 1, N), a one-row latent grid the quantizers accept."""
    return z.T.reshape(1, z.shape[1], 1, z.shape[0]).contiguous()


@dataclass
class StreamHistory:
    usage: list[float] = field(default_factory=list)        # fraction of codes used in each batch
    perplexity: list[float] = field(default_factory=list)   # exp H(p̂) of each batch
    distortion: list[float] = field(default_factory=list)   # mean ‖z − e_k‖² of each batch, before the update
    restarted: list[int] = field(default_factory=list)      # codes restarted at each step
    codebooks: list[torch.Tensor] = field(default_factory=list)  # (K, D) after each step; [0] is the start


def fit_codebook_stream(q: VectorQuantizer, steps: int, batch: int = 256, lr: float = 0.5, seed: int = 0,
                        sampler=None, init: torch.Tensor | None = None) -> StreamHistory:
    """Train ``q`` on ``steps`` batches from ``sampler(n, generator)`` (default :func:`ring_clusters`).

    With ``q.ema`` False the codebook follows SGD on the codebook loss (learning rate ``lr``);
    with ``q.ema`` True it follows the EMA. ``init`` (K, D), if given, replaces the starting codebook.
    """
    g = torch.Generator().manual_seed(seed)
    sampler = sampler or (lambda n, gen: ring_clusters(n, generator=gen))
    if init is not None:
        with torch.no_grad():
            q.embedding.copy_(init)
            q.embed_sum.copy_(init)
            q.cluster_size.fill_(1.0)
    q.train()
    opt = None if q.ema else torch.optim.SGD([q.embedding], lr=lr)
    h = StreamHistory(codebooks=[q.codebook.detach().clone()])
    for _ in range(steps):
        z = sampler(batch, g)
        out = q(as_grid(z))
        h.usage.append(out.stats["usage"])
        h.perplexity.append(out.stats["perplexity"])
        h.distortion.append(out.losses["codebook"].item() * z.shape[1])
        h.restarted.append(int(out.stats.get("restarted", 0)))
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        h.codebooks.append(q.codebook.detach().clone())
    return h


def used_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Boolean (K,): which codes are the nearest code of at least one row of z (N, D)."""
    return torch.bincount(nearest_code(z, codebook), minlength=codebook.shape[0]) > 0


def fit_toy_autoencoder(ste: bool = True, steps: int = 300, K: int = 16, lr: float = 1e-2, seed: int = 0,
                        batch: int = 256) -> list[float]:
    """x (2-D ring clusters) → Linear encoder → VectorQuantizer (k-means init) → Linear decoder → x̂.

    Trains everything with Adam on ‖x − x̂‖² + the quantizer's loss and returns the reconstruction
    error of each step. With ``ste=False`` the decoder reads sg[z_q], so the reconstruction error
    sends no gradient to the encoder (only the commitment term does): what happens without Alg. 2.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    enc, dec = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        enc.weight.mul_(0.1)  # start with a squashed latent: the encoder has to learn to spread it
    q = VectorQuantizer(2, K, kmeans_init=True)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), q.embedding], lr=lr)
    errors = []
    for _ in range(steps):
        x = ring_clusters(batch, generator=g)                                      # (N, 2)
        out = q(as_grid(enc(x)))
        z_q = out.z_q if ste else out.z_q.detach()                                  # (1, 2, 1, N)
        x_hat = dec(z_q[0, :, 0, :].T)                                              # (N, 2)
        rec = (x - x_hat).pow(2).sum(1).mean()
        opt.zero_grad()
        (rec + out.loss).backward()
        opt.step()
        errors.append(rec.item())
    return errors
