"""VQ-VAE vector quantizer (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation
Learning", NeurIPS, arXiv:1711.00937), §4.2–4.3 and Appendix B, Alg. 1–2 of the review.

Data flow (one position of the latent grid, D channels)::

    z_e (B, D, H, W) ──rearrange──> z (N, D) ──argmin_k ‖z − e_k‖²──> k (N,) ──e_k──> (N, D)
         │                                                                          │
         └──────────── z_q = sg[e_k] + (z_e − sg[z_e])  (straight-through, Alg. 2) ───┘
    L_aux = ‖sg[z_e] − e_k‖²  (codebook)  +  β ‖z_e − sg[e_k]‖²  (commitment)

* **Distances** ‖z‖² − 2 z·e + ‖e‖², one (chunk, K) matrix at a time; the ‖z‖² term is dropped for
  the argmin (it does not depend on k), so only one matrix product per chunk is needed.
* **β on the commitment term**, as in the paper (eq. 3). taming-transformers' ``VectorQuantizer``
  historically put β on the codebook term instead (``legacy=True``); that is a bug, not an option here.
* **EMA codebook** (``ema=True``, the paper's Appendix A.1, also VQ-VAE-2): running counts and
  sums with decay γ, N_k ← γ N_k + (1−γ) n_k, m_k ← γ m_k + (1−γ) Σ_{i:k_i=k} z_i, and
  e_k = m_k / Ñ_k with the counts Laplace-smoothed, Ñ_k = (N_k + ε) / (n + K ε) · n, n = Σ_k N_k
  (the smoothing is not in the paper's equations; it is in DeepMind's Sonnet ``VectorQuantizerEMA``
  and in vector-quantize-pytorch, and keeps a code whose count decayed to 0 from dividing by 0). The codebook
  then takes no gradient and the codebook loss is reported but not optimised. The review's
  Appendix B, Alg. 1 prints the shorter e_k ← γ e_k + (1−γ) Σ z / (N_k + ε) (no running counts,
  no smoothing; see :func:`museumtok.quantize.lloyd.ema_step`); the two coincide when the running
  count N_k equals this batch's n_k and ε → 0, and otherwise differ: Alg. 1 weighs a batch in which
  a code won one vector as much as one in which it won a thousand. :func:`ema_update` is the full
  form used here.
* **k-means initialisation** (``kmeans_init=True``): the first training batch's encoder outputs
  seed the codebook (K random vectors, then a few Lloyd iterations).
* **Dead-code restart** (``restart_dead_after=T``): a code unused for T consecutive training
  steps is replaced by a randomly chosen current encoder output (Dhariwal et al. 2020, Jukebox;
  Zeghidour et al. 2021, SoundStream;
  as in vector-quantize-pytorch's ``threshold_ema_dead_code``, but counted in steps).
* **Cosine codes** (``cosine=True``): z and e are l2-normalised before the nearest-code search and
  the output lives on the unit sphere (ViT-VQGAN, Yu et al. 2022, arXiv:2110.04627).
* **Usage term** (``usage_weight=w > 0``; not in the VQ-VAE paper): w · KL(q̄ ‖ U(K)), where q̄ is the
  batch average of the soft assignments q_n = softmax_k(−‖z_n − e_k‖² / (τ · mean_n min_k ‖z_n − e_k‖²)),
  the batch-entropy half of MAGVIT-v2's entropy loss (Yu et al. 2024, arXiv:2310.05737) on Euclidean
  distances, the same term as the Gumbel dVAE's :func:`museumtok.quantize.output.marginal_kl_to_uniform`.
  Its gradient moves encoder outputs towards codes the batch under-uses; the codes themselves still
  follow EMA. The distances are scaled by their batch mean nearest distance (detached), so τ is unitless.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .output import QuantizerOutput, marginal_kl_to_uniform, stats_from_counts


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """argmin_k ‖z_i − e_k‖² for each row of ``z``. (N, D), (K, D) -> (N,) int64.

    Uses ‖e_k‖² − 2 z_i·e_k (‖z_i‖² does not change the argmin) in row chunks of at most
    ``chunk_elems`` distance entries, so memory stays at (chunk, K) whatever N is.
    """
    N, K = z.shape[0], codebook.shape[0]
    e2 = codebook.pow(2).sum(1)  # (K,)
    rows = max(1, chunk_elems // max(K, 1))
    if N <= rows:
        return torch.addmm(e2, z, codebook.T, alpha=-2.0).argmin(1)
    return torch.cat([torch.addmm(e2, z[s : s + rows], codebook.T, alpha=-2.0).argmin(1) for s in range(0, N, rows)])


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Full ‖z_i − e_k‖² = ‖z_i‖² − 2 z_i·e_k + ‖e_k‖², (N, D), (K, D) -> (N, K). For small inputs (notebooks, tests)."""
    return (z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)).clamp_min(0)


def laplace_smooth(N: torch.Tensor, eps: float) -> torch.Tensor:
    """Ñ_k = (N_k + ε) / (n + K ε) · n with n = Σ_k N_k: no count is zero, the total is unchanged."""
    n = N.sum()
    return (N + eps) / (n + N.numel() * eps) * n


def ema_update(
    z: torch.Tensor, indices: torch.Tensor, cluster_size: torch.Tensor, embed_sum: torch.Tensor,
    decay: float, eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA codebook step (VQ-VAE Appendix A.1, counts Laplace-smoothed as in Sonnet), pure function.

    z (N, D), indices (N,), cluster_size N_k (K,), embed_sum m_k (K, D) ->
    (new N_k, new m_k, new codebook e_k = m_k / Ñ_k).
    """
    K = cluster_size.shape[0]
    n_k = torch.bincount(indices, minlength=K)[:K].to(z.dtype)                 # (K,)
    s_k = torch.zeros_like(embed_sum).index_add_(0, indices, z)                # (K, D)
    N = cluster_size * decay + (1 - decay) * n_k
    m = embed_sum * decay + (1 - decay) * s_k
    return N, m, m / laplace_smooth(N, eps)[:, None]


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer with STE, codebook/commitment losses, EMA, k-means init, dead-code restart.

    Args:
        dim: D, channels of z_e and of every code.
        codebook_size: K.
        beta: β, weight of the commitment term ‖z_e − sg[e_k]‖² (0.25 in the paper).
        ema: update the codebook by exponential moving averages instead of the codebook loss.
        decay: γ of the EMA.
        eps: ε of the Laplace smoothing.
        kmeans_init: initialise the codebook from the first training batch by k-means.
        restart_dead_after: restart a code unused for this many training steps (0 = off).
        cosine: l2-normalise z_e and the codes (nearest code = largest cosine similarity).
        kmeans_iters: Lloyd iterations of the k-means initialisation.
        usage_weight: weight of the usage term KL(q̄ ‖ U(K)) (0, the default, is the paper's loss).
        usage_tau: τ of the soft assignments of the usage term, relative to the mean nearest distance.

    Losses are means over the B·H·W·D elements (as ``F.mse_loss``); ``loss`` is
    codebook + β·commitment, or β·commitment alone with ``ema=True``.
    """

    def __init__(self, dim: int, codebook_size: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, kmeans_init: bool = False, restart_dead_after: int = 0, cosine: bool = False,
                 kmeans_iters: int = 10, usage_weight: float = 0.0, usage_tau: float = 1.0):
        super().__init__()
        if dim < 1 or codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be positive, got dim={dim}, codebook_size={codebook_size}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if restart_dead_after < 0:
            raise ValueError(f"restart_dead_after must be >= 0 (0 = off), got {restart_dead_after}")
        self.dim, self.codebook_size = dim, codebook_size
        self.beta, self.ema, self.decay, self.eps = beta, ema, decay, eps
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.restart_dead_after, self.cosine = restart_dead_after, cosine
        if usage_weight < 0 or usage_tau <= 0:
            raise ValueError(f"usage_weight must be >= 0 and usage_tau > 0, got {usage_weight}, {usage_tau}")
        self.usage_weight, self.usage_tau = usage_weight, usage_tau
        embed = torch.randn(codebook_size, dim)
        if cosine:
            embed = F.normalize(embed, dim=1)
        self.embedding = nn.Parameter(embed, requires_grad=not ema)                     # e (K, D)
        self.register_buffer("cluster_size", torch.ones(codebook_size))                # N_k (K,), EMA only
        self.register_buffer("embed_sum", embed.clone())                               # m_k (K, D), EMA only
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))

    @property
    def codebook(self) -> torch.Tensor:
        """The codes the quantizer outputs, (K, D) (l2-normalised when ``cosine``)."""
        return F.normalize(self.embedding, dim=1) if self.cosine else self.embedding

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, codebook_size={self.codebook_size}, beta={self.beta}, ema={self.ema}, "
                f"cosine={self.cosine}, kmeans_init={self.kmeans_init}, restart_dead_after={self.restart_dead_after}")

    # -- codebook maintenance (no gradient) -------------------------------------------------------
    @torch.no_grad()
    def _set_codes(self, rows: torch.Tensor, codes: torch.Tensor) -> None:
        if self.cosine:
            codes = F.normalize(codes, dim=1)
        self.embedding.data[rows] = codes
        self.embed_sum[rows] = codes
        self.cluster_size[rows] = 1.0
        self.unused_steps[rows] = 0

    @torch.no_grad()
    def init_kmeans(self, z: torch.Tensor) -> None:
        """k-means on encoder outputs z (N, D): K random rows (with replacement if N < K), then Lloyd steps."""
        from .lloyd import lloyd_step

        z = z.detach().float()
        if self.cosine:
            z = F.normalize(z, dim=1)
        K, N = self.codebook_size, z.shape[0]
        pick = torch.randperm(N, device=z.device)[:K] if N >= K else torch.randint(N, (K,), device=z.device)
        codes = z[pick].clone()
        for _ in range(self.kmeans_iters if N >= K else 0):
            codes, _, _ = lloyd_step(z, codes)
            if self.cosine:
                codes = F.normalize(codes, dim=1)
        if _distributed():  # every process starts from rank 0's codebook
            torch.distributed.broadcast(codes, 0)
        self._set_codes(torch.arange(K, device=z.device), codes.to(self.embedding.dtype))
        self.initted.fill_(True)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor) -> int:
        """Replace every code unused for ``restart_dead_after`` steps by a random row of z (N, D). Returns how many."""
        dead = torch.nonzero(self.unused_steps >= self.restart_dead_after).flatten()
        if dead.numel() == 0:
            return 0
        pick = torch.randint(z.shape[0], (dead.numel(),), device=z.device)
        codes = z[pick].detach().to(self.embedding.dtype).contiguous()
        if _distributed():  # the dead set is the same everywhere (global counts); the new codes come from rank 0
            torch.distributed.broadcast(codes, 0)
        self._set_codes(dead, codes)
        return int(dead.numel())

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected z of shape (B, {self.dim}, H, W), got {tuple(z.shape)}")
        B, D, H, W = z.shape
        z_e = rearrange(z, "b d h w -> (b h w) d")                                     # (N, D)
        if self.cosine:
            z_e = F.normalize(z_e, dim=1)
        if self.training and not bool(self.initted):
            self.init_kmeans(z_e)

        codebook = self.codebook                                                        # (K, D)
        with torch.no_grad(), torch.autocast(device_type=z.device.type, enabled=False):
            k = nearest_code(z_e.detach().float(), codebook.detach().float())           # (N,), fp32 even under autocast
            counts = torch.bincount(k, minlength=self.codebook_size)                    # (K,)
        e_k = F.embedding(k, codebook)                                                  # (N, D)

        codebook_loss = F.mse_loss(e_k, z_e.detach())                                  # ‖sg[z_e] − e_k‖²
        commitment = F.mse_loss(z_e, e_k.detach())                                     # ‖z_e − sg[e_k]‖²
        loss = self.beta * commitment if self.ema else codebook_loss + self.beta * commitment
        if self.ema:
            codebook_loss = codebook_loss.detach()
        losses = {"codebook": codebook_loss, "commitment": commitment}
        if self.usage_weight and self.training:
            losses["usage_kl"] = self.usage_kl(z_e, codebook)
            loss = loss + self.usage_weight * losses["usage_kl"]

        z_q = e_k.detach() + (z_e - z_e.detach())        # STE: forward exactly e_k, ∂z_q/∂z_e = I
        z_q = rearrange(z_q, "(b h w) d -> b d h w", b=B, h=H, w=W)
        stats = stats_from_counts(counts, self.codebook_size)

        if self.training:
            with torch.no_grad():
                self._after_step(z_e.detach(), k, counts, stats)
        return QuantizerOutput(z_q=z_q, indices=k.view(B, H, W), loss=loss, losses=losses, stats=stats)

    def usage_kl(self, z_e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """KL(q̄ ‖ U(K)) (nats) of the batch-average soft assignment of z_e (N, D) to the codes (K, D)."""
        d = squared_distances(z_e.float(), codebook.detach().float())                 # (N, K) ‖z_n − e_k‖²
        scale = d.detach().min(1).values.mean().clamp_min(1e-8)                       # mean nearest distance
        return marginal_kl_to_uniform(-d / (self.usage_tau * scale), dim=1)

    @torch.no_grad()
    def _after_step(self, z_e: torch.Tensor, k: torch.Tensor, counts: torch.Tensor, stats: dict) -> None:
        if _distributed():  # EMA and dead-code bookkeeping use the counts of all processes
            counts = counts.clone()
            torch.distributed.all_reduce(counts)
        if self.ema:
            z32 = z_e.to(self.embed_sum.dtype)
            n_k = counts.to(z32.dtype)
            s_k = torch.zeros_like(self.embed_sum).index_add_(0, k, z32)
            if _distributed():
                torch.distributed.all_reduce(s_k)
            self.cluster_size.mul_(self.decay).add_(n_k, alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(s_k, alpha=1 - self.decay)
            codes = self.embed_sum / laplace_smooth(self.cluster_size, self.eps)[:, None]
            self.embedding.data.copy_(F.normalize(codes, dim=1) if self.cosine else codes)
        if self.restart_dead_after > 0:
            self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
            stats["restarted"] = float(self.restart_dead(z_e))

    # -- decoding ---------------------------------------------------------------------------------
    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes e_k for ``indices``: (B, H, W) -> (B, D, H, W), or (N,) -> (N, D)."""
        return indices_to_codes(indices, self.codebook, self.codebook_size)


def indices_to_codes(indices: torch.Tensor, codebook: torch.Tensor, K: int) -> torch.Tensor:
    """Shared lookup: (B, H, W) -> (B, D, H, W), (N,) -> (N, D); a clear error for out-of-range indices."""
    indices = indices.long()
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= K):
        raise IndexError(f"indices must lie in [0, {K}), got range [{int(indices.min())}, {int(indices.max())}]")
    codes = F.embedding(indices, codebook)                                             # (..., D)
    if indices.dim() == 1:
        return codes
    if indices.dim() == 3:
        return rearrange(codes, "b h w d -> b d h w")
    raise ValueError(f"indices must be (B, H, W) or (N,), got shape {tuple(indices.shape)}")
