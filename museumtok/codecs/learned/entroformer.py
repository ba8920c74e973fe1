"""Transformer entropy model — Qian, Lin, Sun, Tan & Jin, "Entroformer: A Transformer-based Entropy Model for Learned Image Compression", ICLR 2022 (arXiv:2202.05492), small and simplified (§5.3).

The scale hyperprior (Ballé et al., ICLR 2018, arXiv:1802.01436) codes each element of ŷ with a
zero-mean Gaussian whose σ comes from the side information ẑ alone. A *context model* also looks at
the part of ŷ the decoder already has. Minnen, Ballé & Toderici (NeurIPS 2018, arXiv:1809.02736) do it
with a 5×5 masked convolution (mask "A"); Entroformer replaces it with attention: the entropy
parameters of position i are computed by attending over **all** the already-decoded positions j < i
(raster order over ŷ's h×w grid), with a relative position encoding that lets each head learn which
neighbours matter. Here both context models sit on the same frozen, bundled hyperprior, so they can be
compared at equal training time:

    x ──g_a──▶ y ──Q──▶ ŷ ─────────────────────────────────────────────────────────────▶ g_s ──▶ x̂
               └─|·|─h_a──▶ z ──Q──▶ ẑ ──h_s──▶ σ_hp, hidden ──▶ ψ = [log σ_hp, hidden] (B, M+N, h, w)
                                                          ŷ_<i ──context(ψ_i, ŷ_<i)──▶ (a_i, μ_i)
           σ_i = σ_hp,i · exp(a_i)   P(ŷ_i | μ_i, σ_i) = Φ((ŷ_i − μ_i + ½)/σ_i) − Φ((ŷ_i − μ_i − ½)/σ_i)

    context = "transformer": CausalLatentTransformer (this file)
    context = "mask-a":      MaskedConvContext, Minnen et al.'s masked 5×5 conv + 1×1 entropy-parameter net

The heads that output (a, μ) start at zero, so an untrained context model *is* the hyperprior
(σ = σ_hp, μ = 0, the same bits); training can only move it from there.

The transformer (one token per spatial position, carrying all M channels of ŷ there):

    memory  m_j = MLP(ŷ_j)                                   (B, L, d)       L = h·w, raster order
    query   h_i = W_ψ ψ_i                                    (B, L, d)       (never sees ŷ_i)
    × layers:  h_i += W_o · softmax_j<i( q_i·k_j/√d_h + b[Δr_ij, Δc_ij] ) v_j     q = W_q LN(h), k, v = W_k, W_v LN(m)
               h_i += MLP(LN(h_i))
    (a_i, μ_i) = W_out LN(h_i)                               (B, L, 2M)

The mask is strict (j < i): position i attends to the decoded latents only, never to itself, so the
decoder, which has ŷ_<i and not ŷ_i, computes exactly what the encoder computed. A learned "null"
key/value is always visible (position 0 has nothing decoded yet). b is Entroformer's *diamond*
relative position encoding: one learned bias per head for every offset with |Δr| + |Δc| ≤ radius, one
shared bias for everything farther. Not implemented from the paper: its top-k attention, its
transformer hyper-encoder/decoder, and its parallel bidirectional (checkerboard) context.

Coding is sequential, as for any autoregressive context: the encoder and the decoder both walk ŷ in
raster order, in float64, one position at a time (the transformer with a key/value cache), and each
position's M symbols go through the integer tables of :class:`museumtok.entropy.GaussianConditional`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import HubMixin
from ...entropy import EntropyBottleneck, GaussianConditional, quantize
from ...entropy.coding import TableDecoder, TableEncoder
from ...entropy.bound import lower_bound
from ..layers import MaskedConv2d
from .base import LearnedCodec, float64_copy
from .context import SequentialAnalysis
from .hyperprior import hyperprior_transforms

CONTEXTS = ("transformer", "mask-a")


@dataclass
class EntroformerConfig:
    N: int = 64                # hyperprior: hidden / hyper-latent channels (as the frozen ScaleHyperprior)
    M: int = 96                # hyperprior: channels of the latent ŷ
    lmbda: float = 0.0067      # λ the hyperprior was trained with (metadata)
    context: str = "transformer"  # "transformer" (Entroformer-style) or "mask-a" (Minnen et al. 2018's masked conv)
    d_model: int = 128         # transformer: width of the query and memory vectors
    heads: int = 8             # transformer: attention heads (d_h = d_model / heads)
    layers: int = 2            # transformer: attention + MLP blocks
    mlp_ratio: int = 2         # transformer: MLP hidden width = mlp_ratio · d_model
    radius: int = 4            # transformer: diamond relative positions |Δr| + |Δc| ≤ radius get their own bias

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")


# ---- relative positions -----------------------------------------------------------------------
def diamond_table(radius: int) -> torch.Tensor:
    """(2r+1, 2r+1) int64: the bias index of offset (Δr, Δc) at [Δr + r, Δc + r]; offsets outside the
    diamond |Δr| + |Δc| ≤ r share the last index, n = 2r² + 2r + 1."""
    r = radius
    d = torch.arange(-r, r + 1)
    inside = d.abs()[:, None] + d.abs()[None, :] <= r                   # (2r+1, 2r+1)
    table = torch.full(inside.shape, int(inside.sum()), dtype=torch.long)
    table[inside] = torch.arange(int(inside.sum()))
    return table


def relative_index(rows_q: torch.Tensor, cols_q: torch.Tensor, rows_k: torch.Tensor, cols_k: torch.Tensor,
                   table: torch.Tensor) -> torch.Tensor:
    """Bias index of every (query, key) pair: (Lq,) and (Lk,) grid coordinates -> (Lq, Lk) int64."""
    r = (table.shape[0] - 1) // 2
    dr = rows_k[None, :] - rows_q[:, None]
    dc = cols_k[None, :] - cols_q[:, None]
    far = int(table.max())
    inside = (dr.abs() <= r) & (dc.abs() <= r)
    return torch.where(inside, table[(dr + r).clamp(0, 2 * r), (dc + r).clamp(0, 2 * r)], far)


# ---- the two context models -------------------------------------------------------------------
class CausalLatentTransformer(nn.Module):
    """Masked attention over the already-decoded positions of ŷ, conditioned on the hyperprior's ψ."""

    def __init__(self, M: int, psi_channels: int, d_model: int = 128, heads: int = 8, layers: int = 2,
                 mlp_ratio: int = 2, radius: int = 4):
        super().__init__()
        d = d_model
        self.M, self.d, self.heads, self.n_layers = M, d, heads, layers
        self.embed_y = nn.Sequential(nn.Linear(M, d), nn.GELU(), nn.Linear(d, d))     # ŷ_j -> m_j
        self.embed_psi = nn.Linear(psi_channels, d)                                    # ψ_i -> h_i
        self.register_buffer("table", diamond_table(radius), persistent=False)
        n_bias = int(self.table.max()) + 1
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.ln_q, blk.ln_m, blk.ln_mlp = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
            blk.q, blk.k, blk.v, blk.o = (nn.Linear(d, d) for _ in range(4))
            blk.null_k = nn.Parameter(torch.zeros(d))      # the always-visible "nothing decoded" slot
            blk.null_v = nn.Parameter(torch.zeros(d))
            blk.bias = nn.Parameter(self._locality_prior(heads, radius))
            blk.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
            self.blocks.append(blk)
        self.ln_out = nn.LayerNorm(d)
        self.out = nn.Linear(d, 2 * M)
        nn.init.zeros_(self.out.weight)    # start as the hyperprior: a = 0 (σ = σ_hp), μ = 0
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def _locality_prior(heads: int, radius: int) -> torch.Tensor:
        """Initial diamond biases (H, n + 1): −s_h·(|Δr| + |Δc|), s_h = 2^(1−h) (2, 1, ½, …), far: −s_h·(radius + 1).

        ALiBi-like (Press et al., ICLR 2022): from the first step some heads look at the nearest decoded
        neighbours and others further; zero biases would start as a uniform average over all of ŷ_<i and
        take thousands of small Adam steps to become local."""
        d = torch.arange(-radius, radius + 1).abs()
        dist = (d[:, None] + d[None, :])[diamond_table(radius) < diamond_table(radius).max()]   # (n,) in index order
        dist = torch.cat([dist.float(), torch.tensor([radius + 1.0])])
        slopes = 2.0 ** (1 - torch.arange(heads, dtype=torch.float32))
        return -slopes[:, None] * dist[None, :]

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (..., L, d) -> (..., H, L, d_h)
        return t.unflatten(-1, (self.heads, self.d // self.heads)).transpose(-3, -2)

    def forward(self, y_ctx: torch.Tensor, psi: torch.Tensor, return_attention: bool = False):
        """Teacher-forced, all positions at once: ŷ (B, M, h, w), ψ (B, P, h, w) -> (a, μ), each (B, M, h, w).

        With ``return_attention`` also the attention weights of every layer, (B, H, L, 1 + L) each
        (column 0 is the null slot)."""
        B, M, h, w = y_ctx.shape
        L = h * w
        m = self.embed_y(y_ctx.flatten(2).transpose(1, 2))                 # (B, L, d)
        x = self.embed_psi(psi.flatten(2).transpose(1, 2))                 # (B, L, d)
        pos = torch.arange(L, device=y_ctx.device)
        rows, cols = pos // w, pos % w
        rel = relative_index(rows, cols, rows, cols, self.table)           # (L, L)
        allowed = pos[None, :] < pos[:, None]                              # strict raster mask: j < i
        attn_maps = []
        for blk in self.blocks:
            q = self._split(blk.q(blk.ln_q(x)))                            # (B, H, L, d_h)
            mm = blk.ln_m(m)
            k = self._split(torch.cat([blk.null_k.expand(B, 1, -1), blk.k(mm)], 1))   # (B, H, 1 + L, d_h)
            v = self._split(torch.cat([blk.null_v.expand(B, 1, -1), blk.v(mm)], 1))
            bias = blk.bias[:, rel].masked_fill(~allowed, float("-inf"))   # (H, L, L)
            bias = torch.cat([bias.new_zeros(self.heads, L, 1), bias], -1)  # (H, L, 1 + L): null slot, no bias
            s = q @ k.transpose(-1, -2) / (self.d // self.heads) ** 0.5 + bias   # (B, H, L, 1 + L)
            a = s.softmax(-1)
            if return_attention:
                attn_maps.append(a.detach())
            x = x + blk.o((a @ v).transpose(1, 2).flatten(2))              # (B, L, d)
            x = x + blk.mlp(blk.ln_mlp(x))
        p = self.out(self.ln_out(x)).transpose(1, 2).unflatten(2, (h, w))   # (B, 2M, h, w)
        a_, mu = p[:, :M], p[:, M:]
        return (a_, mu, attn_maps) if return_attention else (a_, mu)

    def sequential(self, psi: torch.Tensor) -> "_TransformerSteps":
        """A stepper for coding one image: ψ (P, h, w) (float64 for reproducible tables)."""
        return _TransformerSteps(self, psi)


class _TransformerSteps:
    """Raster-order coding with a key/value cache: ``params(i)`` -> (a, μ) (M,) each, then ``push(i, ŷ_i)``."""

    def __init__(self, net: CausalLatentTransformer, psi: torch.Tensor):
        self.net = net
        P, h, w = psi.shape
        self.w, L = w, h * w
        dt = psi.dtype
        H, dh = net.heads, net.d // net.heads
        with torch.no_grad():
            self.x0 = net.embed_psi(psi.flatten(1).T)                      # (L, d) every query's start
        self.K = [torch.zeros(H, L + 1, dh, dtype=dt) for _ in net.blocks]  # slot 0: null
        self.V = [torch.zeros(H, L + 1, dh, dtype=dt) for _ in net.blocks]
        for n, blk in enumerate(net.blocks):
            self.K[n][:, 0] = blk.null_k.detach().view(H, dh)
            self.V[n][:, 0] = blk.null_v.detach().view(H, dh)
        pos = torch.arange(L)
        self.rows, self.cols = pos // w, pos % w
        self.scale = dh ** -0.5

    @torch.no_grad()
    def params(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        H = net.heads
        x = self.x0[i]                                                     # (d,)
        rel = relative_index(self.rows[i : i + 1], self.cols[i : i + 1], self.rows[:i], self.cols[:i], net.table)[0]
        for n, blk in enumerate(net.blocks):
            q = blk.q(blk.ln_q(x)).view(H, 1, -1)                          # (H, 1, d_h)
            s = (q @ self.K[n][:, : i + 1].transpose(1, 2))[:, 0] * self.scale   # (H, 1 + i)
            s[:, 1:] += blk.bias[:, rel]
            a = s.softmax(-1)
            x = x + blk.o((a[:, None, :] @ self.V[n][:, : i + 1])[:, 0].reshape(-1))
            x = x + blk.mlp(blk.ln_mlp(x))
        p = net.out(net.ln_out(x))
        return p[: net.M], p[net.M :]

    @torch.no_grad()
    def push(self, i: int, y_i: torch.Tensor) -> None:
        net = self.net
        m = net.embed_y(y_i)                                               # (d,)
        for n, blk in enumerate(net.blocks):
            mm = blk.ln_m(m)
            self.K[n][:, i + 1] = blk.k(mm).view(net.heads, -1)
            self.V[n][:, i + 1] = blk.v(mm).view(net.heads, -1)


class MaskedConvContext(nn.Module):
    """Minnen et al. (2018)'s context: a 5×5 mask-A convolution over ŷ, then 1×1 convolutions on [ψ, ctx]."""

    def __init__(self, M: int, psi_channels: int, kernel: int = 5):
        super().__init__()
        self.M, self.k = M, kernel
        self.context_prediction = MaskedConv2d(M, 2 * M, kernel, padding=kernel // 2)
        c_in = psi_channels + 2 * M
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(c_in, 10 * M // 3, 1), nn.LeakyReLU(), nn.Conv2d(10 * M // 3, 8 * M // 3, 1), nn.LeakyReLU(),
            nn.Conv2d(8 * M // 3, 2 * M, 1))
        nn.init.zeros_(self.entropy_parameters[-1].weight)    # start as the hyperprior
        nn.init.zeros_(self.entropy_parameters[-1].bias)

    def forward(self, y_ctx: torch.Tensor, psi: torch.Tensor):
        """ŷ (B, M, h, w), ψ (B, P, h, w) -> (a, μ), each (B, M, h, w)."""
        ctx = self.context_prediction(y_ctx)                               # (B, 2M, h, w)
        p = self.entropy_parameters(torch.cat([psi, ctx], 1))              # (B, 2M, h, w)
        return p[:, : self.M], p[:, self.M :]

    def sequential(self, psi: torch.Tensor) -> "_MaskedConvSteps":
        return _MaskedConvSteps(self, psi)


class _MaskedConvSteps:
    def __init__(self, net: MaskedConvContext, psi: torch.Tensor):
        M, k = net.M, net.k
        P, h, self.w = psi.shape
        c = net.context_prediction
        self.W_ctx = (c.weight * c.mask.to(c.weight.dtype)).reshape(2 * M, M * k * k).detach()   # (2M, M·k²)
        self.b_ctx = c.bias.detach()
        self.layers = [(l.weight[:, :, 0, 0].detach(), l.bias.detach()) for l in net.entropy_parameters
                       if isinstance(l, nn.Conv2d)]
        self.slope = next(a.negative_slope for a in net.entropy_parameters if isinstance(a, nn.LeakyReLU))
        self.psi, self.M, self.k = psi, M, k
        self.y = torch.zeros(M, h + k - 1, self.w + k - 1, dtype=psi.dtype)     # ŷ padded by k//2

    def params(self, i: int):
        r, c, k = i // self.w, i % self.w, self.k
        ctx = self.W_ctx @ self.y[:, r : r + k, c : c + k].reshape(-1) + self.b_ctx   # (2M,)
        p = torch.cat([self.psi[:, r, c], ctx])
        for n, (W, b) in enumerate(self.layers):
            p = W @ p + b
            if n < len(self.layers) - 1:
                p = F.leaky_relu(p, self.slope)
        return p[: self.M], p[self.M :]

    def push(self, i: int, y_i: torch.Tensor) -> None:
        r, c, h = i // self.w, i % self.w, self.k // 2
        self.y[:, r + h, c + h] = y_i


# ---- the codec --------------------------------------------------------------------------------
class ContextualHyperprior(SequentialAnalysis, LearnedCodec, HubMixin):
    """A scale hyperprior whose ŷ is coded with a context model (transformer or mask-A) on top of σ_hp."""

    divisor = 64
    #: first header byte: 4 for the mask-A context, 5 for the transformer (set per instance)
    format_id = 5

    def __init__(self, N: int = 64, M: int = 96, lmbda: float = 0.0067, context: str = "transformer",
                 d_model: int = 128, heads: int = 8, layers: int = 2, mlp_ratio: int = 2, radius: int = 4):
        super().__init__()
        self.cfg = EntroformerConfig(int(N), int(M), float(lmbda), context, int(d_model), int(heads), int(layers),
                                     int(mlp_ratio), int(radius))
        # the hyperprior, exactly ScaleHyperprior's modules (frozen when trained from one)
        self.g_a, self.g_s, self.h_a, self.h_s = hyperprior_transforms(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()
        self.format_id = 5 if context == "transformer" else 4
        P = M + N                                                # ψ = [log σ_hp (M), h_s's last hidden layer (N)]
        if context == "transformer":
            self.context = CausalLatentTransformer(M, P, d_model, heads, layers, mlp_ratio, radius)
        else:
            self.context = MaskedConvContext(M, P)

    @classmethod
    def from_hyperprior(cls, hp: nn.Module, **kwargs) -> "ContextualHyperprior":
        """Wrap a trained :class:`ScaleHyperprior` (all its weights and integer tables copied)."""
        net = cls(N=hp.cfg.N, M=hp.cfg.M, lmbda=hp.cfg.lmbda, **kwargs)
        missing, unexpected = net.load_state_dict(hp.state_dict(), strict=False)
        if unexpected or any(not k.startswith("context.") for k in missing):
            raise ValueError(f"hyperprior weights do not fit: missing {missing}, unexpected {unexpected}")
        return net

    def hyperprior_modules(self) -> list[nn.Module]:
        return [self.g_a, self.g_s, self.h_a, self.h_s, self.entropy_bottleneck, self.gaussian_conditional]

    def entropy_modules(self):
        return [self.entropy_bottleneck, self.gaussian_conditional]

    def hyper_features(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ẑ (B, N, h/4, w/4) -> σ_hp (B, M, h, w) clamped to the smallest tabled σ, ψ (B, M + N, h, w)."""
        return self._hyper_features(self.h_s, z_hat)

    def _hyper_features(self, h_s: nn.Module, z_hat: torch.Tensor):
        hidden = h_s[:4](z_hat)                                   # (B, N, h, w)
        sigma_hp = lower_bound(h_s[4:](hidden), self.gaussian_conditional.scale_min)   # (B, M, h, w)
        return sigma_hp, torch.cat([torch.log(sigma_hp), hidden], 1)

    def entropy_parameters(self, y_ctx: torch.Tensor, psi: torch.Tensor, sigma_hp: torch.Tensor):
        """Teacher-forced (μ, σ) for every element, from ŷ (or ỹ) as the context: each (B, M, h, w)."""
        a, mu = self.context(y_ctx, psi)
        return mu, sigma_hp * torch.exp(a)

    def latent_likelihoods(self, y: torch.Tensor, z_hat: torch.Tensor, training: bool | None = None) -> torch.Tensor:
        """P(ỹ or ŷ | μ, σ) (B, M, h, w) from y and ẑ: what the trainer minimises (−log2 of it)."""
        training = self.training if training is None else training
        with torch.no_grad():
            sigma_hp, psi = self.hyper_features(z_hat)
        y_ctx = quantize(y, "noise" if training else "round")
        mu, sigma = self.entropy_parameters(y_ctx, psi, sigma_hp)
        return self.gaussian_conditional.likelihood(y_ctx, sigma, mu)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)                                           # (B, M, H/16, W/16)
        z = self.h_a(torch.abs(y))                                # (B, N, H/64, W/64)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        sigma_hp, psi = self.hyper_features(z_hat)
        y_ctx = quantize(y, "noise" if self.training else "round")
        mu, sigma = self.entropy_parameters(y_ctx, psi, sigma_hp)
        y_hat, y_likelihoods = self.gaussian_conditional(y, sigma, mu)
        x_hat = self.g_s(quantize(y, "ste", mu) if self.training else y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
                "y": y, "z": z, "y_hat": y_hat, "z_hat": z_hat, "sigma": sigma, "mu": mu}

    # ---- sequential coding -------------------------------------------------------------------
    def _raster(self, z_hat: torch.Tensor, y: torch.Tensor | None, code):
        """Walk ŷ in raster order in float64; ``code(index (M,), mu (M,), y_i or None) -> symbols (M,)``.
        Returns ŷ, μ, σ, each (1, M, h, w) float64."""
        M = self.cfg.M
        sigma_hp, psi = self._hyper_features(float64_copy(self.h_s), z_hat.double())
        _, _, h, w = psi.shape
        steps = float64_copy(self.context).sequential(psi[0])
        out = torch.zeros(3, M, h * w, dtype=torch.float64)       # ŷ, μ, σ
        s_hp = sigma_hp[0].flatten(1)                              # (M, L)
        y_flat = None if y is None else y[0].double().flatten(1)
        for i in range(h * w):
            a, mu = steps.params(i)
            sigma = s_hp[:, i] * torch.exp(a)
            q = code(self.gaussian_conditional.scale_index(sigma), mu, None if y_flat is None else y_flat[:, i])
            y_i = q.double() + mu
            steps.push(i, y_i)
            out[0, :, i], out[1, :, i], out[2, :, i] = y_i, mu, sigma
        y_hat, mu, sigma = (t.view(1, M, h, w) for t in out)
        return y_hat, mu, sigma

    def _compress_latents(self, enc: TableEncoder, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y))
        z_hat = self.entropy_bottleneck.compress(enc, z)
        table, length, offset = self.gaussian_conditional.numpy_tables()

        def code(index, mu, y_i):
            q = torch.round(y_i - mu).long()
            enc.encode_rows(q.numpy(), index.numpy(), table, length, offset)
            return q

        y_hat, mu, sigma = self._raster(z_hat, y, code)
        return {"y_hat": y_hat, "z_hat": z_hat, "mu": mu, "sigma": sigma}

    def _decompress_latents(self, dec: TableDecoder, hp: int, wp: int) -> torch.Tensor:
        z_hat = self.entropy_bottleneck.decompress(dec, (1, self.cfg.N, hp // 64, wp // 64))
        table, length, offset = self.gaussian_conditional.numpy_tables()

        def code(index, mu, _):
            return torch.from_numpy(dec.decode_rows(index.numpy(), table, length, offset))

        y_hat, _, _ = self._raster(z_hat, None, code)
        return float64_copy(self.g_s)(y_hat)

    def config_dict(self) -> dict:
        return asdict(self.cfg)
