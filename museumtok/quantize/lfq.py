"""Lookup-free quantization of MAGVIT-v2 (Yu, Lezama, Gundavarapu, et al. 2024, "Language Model Beats Diffusion —
Tokenizer is Key to Visual Generation", ICLR, arXiv:2310.05737). Beyond the review.

(The review's reference [9] names "MAGVIT V2 … arXiv:2307.04755"; MAGVIT-v2 is arXiv:2310.05737.)

The codebook is the corners of a hypercube, C = {−s, +s}^d with K = 2^d codes, so "lookup" is a
sign per channel and the index is the binary number those signs spell:

    z (B, dim, H, W) ──1×1 conv (if dim ≠ d)──> (B, d, H, W)
        ──q_i = s·sign(z_i), straight-through──> (B, d, H, W) ──1×1 conv (if dim ≠ d)──> z_q
    k = Σ_i 1[z_i > 0] · 2^(d−1−i)              (first channel most significant, as vector-quantize-pytorch)

Entropy penalty of the paper (§3.1), with the soft assignment q(c | z) ∝ exp(−‖z − c‖² / τ):

    L_entropy = E_z[H(q(c | z))] − γ · H(E_z[q(c | z)])

low per-sample entropy (confident codes) and high batch entropy (all codes used). Because
‖z − c‖² separates over channels, q(c | z) is a product of independent bits with
P(bit_i = +) = σ(4 s z_i / τ), so the per-sample term is exactly Σ_i H_b(σ(4 s z_i/τ)) at O(d) cost.
The batch term needs the mixture over all 2^d codes; it is computed exactly for d ≤
``exact_entropy_max_bits`` and otherwise replaced by the sum of per-bit marginal entropies, an upper
bound that is tight when the bits are independent across the batch (documented approximation).
A commitment term ‖z − sg[q]‖² (weight ``commitment_weight``) is added, as in vector-quantize-pytorch's LFQ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .output import QuantizerOutput, batch_stats, implicit_codes


def _binary_entropy_from_logits(logit: torch.Tensor) -> torch.Tensor:
    """H_b(σ(x)) in nats, stable for large |x|."""
    p = torch.sigmoid(logit)
    return -(p * F.logsigmoid(logit) + (1 - p) * F.logsigmoid(-logit))


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * p.clamp_min(1e-30).log()).sum(dim)


class LFQ(nn.Module):
    """Lookup-free quantizer with K = 2^d binary codes and MAGVIT-v2's entropy penalty.

    Args:
        codebook_size: K, a power of two (d = log2 K bits).
        dim: channels of the input and output (default d); a 1×1 conv projects when dim ≠ d.
        entropy_weight: weight of L_entropy in ``loss`` (0.1 in the paper).
        commitment_weight: weight of the commitment term ‖z − sg[q]‖² (0.25).
        diversity_gamma: γ on the batch-entropy term.
        inv_temperature: 1/τ of the soft assignment q(c | z).
        codebook_scale: s, the value of each code channel (codes are ±s).
        exact_entropy_max_bits: compute H(E[q]) over all 2^d codes up to this d, else the per-bit bound.
    """

    def __init__(self, codebook_size: int, dim: int | None = None, entropy_weight: float = 0.1,
                 commitment_weight: float = 0.25, diversity_gamma: float = 1.0, inv_temperature: float = 100.0,
                 codebook_scale: float = 1.0, exact_entropy_max_bits: int = 12):
        super().__init__()
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two >= 2 (K = 2^d), got {codebook_size}")
        self.codebook_size = codebook_size
        self.d = codebook_size.bit_length() - 1
        self.dim = dim or self.d
        self.entropy_weight, self.commitment_weight = entropy_weight, commitment_weight
        self.diversity_gamma, self.inv_temperature = diversity_gamma, inv_temperature
        self.codebook_scale, self.exact_entropy_max_bits = codebook_scale, exact_entropy_max_bits
        self.register_buffer("_mask", 2 ** torch.arange(self.d - 1, -1, -1), persistent=False)   # (d,)
        self.project_in = nn.Conv2d(self.dim, self.d, 1) if self.dim != self.d else nn.Identity()
        self.project_out = nn.Conv2d(self.d, self.dim, 1) if self.dim != self.d else nn.Identity()

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, dim={self.dim}, entropy_weight={self.entropy_weight}, "
                f"commitment_weight={self.commitment_weight}, inv_temperature={self.inv_temperature}")

    def indices_to_bits(self, indices: torch.Tensor) -> torch.Tensor:
        """k (...,) -> codes in {−s, +s}^d, (..., d), before project_out."""
        bits = (indices.long()[..., None] & self._mask) != 0
        return torch.where(bits, self.codebook_scale, -self.codebook_scale).float()

    @property
    def implicit_codebook(self) -> torch.Tensor:
        """All 2^d codes, (K, d), in index order."""
        return self.indices_to_bits(torch.arange(self.codebook_size, device=self._mask.device))

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[H(q(c|z))], H(E[q(c|z)])) in nats for channel-last z (N, d)."""
        logit = 4 * self.codebook_scale * self.inv_temperature * z                  # (N, d) logit of bit = +
        per_sample = _binary_entropy_from_logits(logit).sum(1).mean()
        if self.d <= self.exact_entropy_max_bits:
            # log q(c|z) = Σ_i log σ(± logit_i); (N, K) one chunk of rows at a time
            signs = (self.implicit_codebook > 0).to(z.dtype)                        # (K, d) in {0, 1}
            ls_pos, ls_neg = F.logsigmoid(logit), F.logsigmoid(-logit)              # (N, d)
            rows = max(1, (1 << 22) // self.codebook_size)
            avg = z.new_zeros(self.codebook_size)
            for s in range(0, z.shape[0], rows):
                log_q = ls_pos[s:s + rows] @ signs.T + ls_neg[s:s + rows] @ (1 - signs).T  # (n, K)
                avg = avg + log_q.exp().sum(0)
            batch = _entropy(avg / z.shape[0])
        else:
            p_bar = torch.sigmoid(logit).mean(0)                                     # (d,) marginal P(bit = +)
            batch = (_entropy(p_bar[:, None]) + _entropy(1 - p_bar[:, None])).sum()
        return per_sample, batch

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected z of shape (B, {self.dim}, H, W), got {tuple(z.shape)}")
        z = self.project_in(z)                                                       # (B, d, H, W)
        zf = rearrange(z, "b d h w -> b h w d")                                     # (B, H, W, d)
        q = torch.where(zf > 0, self.codebook_scale, -self.codebook_scale).to(zf.dtype)
        indices = ((zf > 0).long() * self._mask).sum(-1)                             # (B, H, W)
        # STE, exact values forward; contiguous in (B, H, W, d) like indices_to_codes builds them, so project_out
        # sees the same memory layout (and runs the same kernel) on both paths: bitwise-equal codes
        z_hat = (q + (zf - zf.detach())).contiguous()
        commitment = F.mse_loss(zf, q)
        per_sample, batch = self.entropy_terms(rearrange(zf, "b h w d -> (b h w) d"))
        entropy = per_sample - self.diversity_gamma * batch
        z_q = self.project_out(rearrange(z_hat, "b h w d -> b d h w"))               # (B, dim, H, W)
        stats = batch_stats(indices, self.codebook_size)
        stats.update(per_sample_entropy=float(per_sample.detach()), batch_entropy=float(batch.detach()))
        return QuantizerOutput(
            z_q=z_q, indices=indices, loss=self.entropy_weight * entropy + self.commitment_weight * commitment,
            losses={"entropy": entropy, "commitment": commitment}, stats=stats)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B, dim, H, W), or (N,) -> (N, dim); the same values forward() outputs."""
        return implicit_codes(indices, self.codebook_size, self.indices_to_bits, self.project_out)
