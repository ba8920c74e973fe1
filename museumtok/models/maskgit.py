"""MaskGIT: Chang, Zhang, Jiang, Liu & Freeman, "MaskGIT: Masked Generative Image Transformer", CVPR 2022,
arXiv:2202.04200 (§4.6) — and, for comparison, a left-to-right autoregressive prior of the same size.

A bidirectional transformer reads a grid of tokens (from a frozen tokenizer such as ``vqvae-f8-k1024``)
in which some positions hold a special [MASK] token (id K), and predicts the code at every position:

    k (B, h, w) ──mask a fraction γ(r) of positions──▶ k̃ (B, N)   N = h·w, [MASK] = K
    k̃ ──Embedding(K+1, d) + pos (N, d)──▶ (B, N, d) ──Transformer (full attention) × L──▶ logits (B, N, K)
    training loss: cross-entropy on the masked positions only;  r ~ U(0, 1),  γ(r) = cos(π r / 2)

Decoding (§3.2 of the paper; ``maskgit/libml/parallel_decode.py`` of google-research/maskgit): start with
the positions to generate masked, and for t = 0 … T−1:

    1. one forward pass → logits at every position
    2. sample k_i ~ softmax(logits) at the masked positions (categorical, temperature 1: argmax of
       logits + Gumbel noise, as ``jax.random.categorical`` in the reference code)
    3. confidence c_i = log p(k_i), the untempered probability of the sampled code, plus annealed choice
       noise τ_c·(1 − (t+1)/T)·g_i, g_i ~ Gumbel(0, 1) (τ_c = 4.5 in the reference code, whose ratio is
       (t+1)/T for t from 0 — the paper's t/T for t from 1 — so the last step has no noise); positions that
       were given or are already fixed get c_i = +∞, so they are never re-masked
    4. keep the most confident, re-mask the rest: n_masked(t+1) = ⌊γ((t+1)/T) · N_masked(0)⌋ (cosine γ)

That is ``decoding="paper"``, the default. The review (§4.6) describes something else, kept as
``decoding="review"``: sample from softmax(logits / τ_t) with τ_t = max(τ_min, τ0 · α^t), rank by the
probability under that tempered distribution, no choice noise unless ``choice_temperature`` is given
(the review also says "top-p" where MaskGIT keeps a count, the cosine schedule's, of the most confident:
errata ``s4-6-maskgit-decoding``). The noise of step 3 is drawn on the logits' device and dtype.

γ(1) = 0, so after T steps every position is filled: T forward passes instead of the N passes of
raster-order autoregressive decoding (the causal variant below, ``causal=True``: a [BOS]=K token is
prepended and position i attends to positions < i). Inpainting is decoding with the tokens outside a
region given: only the region is masked, and step 3 keeps everything outside it unchanged. The causal
variant inpaints in raster order from the tokens before each masked one only (``fill_autoregressive``).

Likelihood (``chain_rule_log_probs``): exact for the causal variant (teacher forcing); for MaskGIT, the
chain rule over a fixed reveal procedure — raster or confidence order one token per pass, or the T groups
of the cosine schedule — each a proper distribution over grids (``museumtok.eval.generative``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checkpoint import HubMixin, strip_metadata


@dataclass
class MaskGITConfig:
    codebook_size: int = 1024                    # K; the [MASK] (or, causal, [BOS]) token has id K
    grid: tuple = (8, 8)                         # (h, w) token grid; N = h·w positions
    dim: int = 128                               # d, transformer width
    depth: int = 4                               # L, transformer layers
    heads: int = 4                               # attention heads
    mlp_ratio: float = 4.0                       # feed-forward width / d
    dropout: float = 0.1                         # dropout in attention and feed-forward
    causal: bool = False                         # True: the left-to-right autoregressive prior of the same size
    tokenizer: str = "vqvae-f8-k1024"            # the frozen tokenizer whose tokens it models (metadata)

    def __post_init__(self):
        self.grid = tuple(int(g) for g in self.grid)
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")


def cosine_schedule(r: torch.Tensor | float) -> torch.Tensor | float:
    """γ(r) = cos(π r / 2): the fraction of tokens masked at ratio r ∈ [0, 1]; γ(0) = 1, γ(1) = 0."""
    if torch.is_tensor(r):
        return torch.cos(math.pi / 2 * r)
    return math.cos(math.pi / 2 * r)


def temperature_at(t: int, tau0: float = 1.0, alpha: float = 0.9, tau_min: float = 0.1) -> float:
    """τ_t = max(τ_min, τ0 · α^t), the review's annealed sampling temperature (§4.6)."""
    return max(tau_min, tau0 * alpha ** t)


#: MaskGIT's decodings: "paper" (Chang et al. 2022 and its reference code) and "review" (the review's §4.6 τ_t)
DECODINGS = ("paper", "review")
#: the reference code's choice temperature (``sample_choice_temperature`` in maskgit_class_cond_config.py)
PAPER_CHOICE_TEMPERATURE = 4.5


def choice_noise_scale(t: int, steps: int, choice_temperature: float = PAPER_CHOICE_TEMPERATURE) -> float:
    """τ_c · (1 − (t+1)/T): the Gumbel noise's weight at step t = 0 … T−1 (the reference code's
    ``choice_temperature * (1. - ratio)`` with ratio = (t+1)/T); 0 at the last step."""
    return choice_temperature * (1 - (t + 1) / steps)


def uniform_like(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(0, 1) noise with ``like``'s shape, on ``like``'s device and in its dtype.

    With a ``generator`` on another device (a CPU ``torch.Generator`` for a CUDA model) the numbers are
    drawn on the generator's device, so a seed gives the same draws everywhere, and then moved.
    """
    if generator is not None and generator.device != like.device:
        u = torch.rand(like.shape, generator=generator, device=generator.device)
        return u.to(device=like.device, dtype=like.dtype)
    return torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def gumbel_like(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise g = −log(−log u), u ~ U(0, 1), shaped, placed and typed like ``like``."""
    tiny = torch.finfo(like.dtype).tiny if like.dtype.is_floating_point else 1e-20
    e = (-torch.log(uniform_like(like, generator).clamp(tiny, 1.0))).clamp_min(tiny)   # Exp(1) draws, > 0
    return -torch.log(e)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` (..., K) -> (...) int64 on ``probs``' device (``generator`` on any device)."""
    flat = probs.reshape(-1, probs.shape[-1])
    if generator is not None and generator.device != flat.device:
        return torch.multinomial(flat.float().to(generator.device), 1, generator=generator).to(probs.device).view(probs.shape[:-1])
    return torch.multinomial(flat.float(), 1, generator=generator).view(probs.shape[:-1])


def masked_counts(n_masked: int, steps: int) -> list[int]:
    """How many positions are still masked after each of the T steps (the last is 0), for N_masked(0) = n_masked.

    ⌊γ((t+1)/T) · n⌋, but at least one fewer than before each step (so progress is made every step
    while anything is left) and never negative.
    """
    out, cur = [], n_masked
    for t in range(steps):
        n = int(math.floor(cosine_schedule((t + 1) / steps) * n_masked + 1e-9))
        n = max(0, min(n, cur - 1))
        out.append(n)
        cur = n
    return out


def random_mask(B: int, N: int, generator: torch.Generator | None = None,
                r: torch.Tensor | None = None) -> torch.Tensor:
    """Training mask (B, N) bool: for each sample r ~ U(0, 1), mask ⌈γ(r)·N⌉ random positions (≥ 1)."""
    if r is None:
        r = torch.rand(B, generator=generator)
    n = torch.ceil(cosine_schedule(r) * N).clamp(1, N).long()                  # (B,)
    scores = torch.rand(B, N, generator=generator)                             # random order per sample
    rank = scores.argsort(1).argsort(1)                                        # (B, N) rank of each position
    return rank < n[:, None]


class _Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:  # (B, N, d)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=attn_mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class MaskGIT(nn.Module, HubMixin):
    """Token transformer; bidirectional (MaskGIT) or, with ``causal=True``, the autoregressive baseline.

    ``forward`` counts its calls in ``self.forward_passes`` (the benchmark's and the tests' unit of cost).
    """

    def __init__(self, config: MaskGITConfig = None):
        super().__init__()
        if isinstance(config, dict):
            config = MaskGITConfig(**strip_metadata(config))
        self.config = config = config or MaskGITConfig()
        self._hub_mixin_config = config
        K, N = config.codebook_size, self.N
        self.tok_emb = nn.Embedding(K + 1, config.dim)           # ids 0..K−1 codes, K = [MASK] / [BOS]
        self.pos_emb = nn.Parameter(torch.zeros(1, N, config.dim))
        nn.init.normal_(self.pos_emb, std=0.02)
        self.blocks = nn.ModuleList(_Block(config.dim, config.heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.depth))
        self.ln_f = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, K)
        if config.causal:  # position i sees positions ≤ i of the shifted input [BOS, k_0, …, k_{N−2}]
            self.register_buffer("causal_mask", torch.triu(torch.full((N, N), float("-inf")), 1), persistent=False)
        self.forward_passes = 0

    @property
    def N(self) -> int:
        return self.config.grid[0] * self.config.grid[1]

    @property
    def mask_id(self) -> int:
        return self.config.codebook_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) int64 in [0, K] -> logits (B, N, K)."""
        B, N = tokens.shape
        if N != self.N:
            raise ValueError(f"expected {self.N} tokens (grid {self.config.grid}), got {N}")
        self.forward_passes += 1
        x = self.tok_emb(tokens) + self.pos_emb                  # (B, N, d)
        mask = self.causal_mask if self.config.causal else None
        for blk in self.blocks:
            x = blk(x, mask)
        return self.head(self.ln_f(x))                           # (B, N, K)

    # ---- training ---------------------------------------------------------------------------------
    def loss(self, k: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """k (B, h, w) or (B, N) codes -> cross-entropy (masked positions for MaskGIT, all for causal)."""
        k = k.reshape(k.shape[0], -1).long()                     # (B, N)
        B, N = k.shape
        if self.config.causal:
            bos = torch.full((B, 1), self.mask_id, dtype=torch.long, device=k.device)
            logits = self(torch.cat([bos, k[:, :-1]], 1))        # (B, N, K): position i predicts k_i
            ce = F.cross_entropy(rearrange(logits, "b n k -> (b n) k"), k.reshape(-1))
            return {"loss": ce, "mask_fraction": torch.tensor(1.0)}
        m = random_mask(B, N, generator).to(k.device)            # (B, N) True = masked
        logits = self(torch.where(m, torch.full_like(k, self.mask_id), k))
        ce = F.cross_entropy(logits[m], k[m])
        return {"loss": ce, "mask_fraction": m.float().mean()}

    # ---- decoding ---------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, masked: torch.Tensor | None = None, steps: int = 8,
               decoding: str = "paper", choice_temperature: float | None = None, tau0: float | None = None,
               alpha: float | None = None, tau_min: float | None = None, generator: torch.Generator | None = None,
               history: list | None = None, greedy: bool = False) -> torch.Tensor:
        """Iterative parallel decoding (MaskGIT). tokens (B, h, w) or (B, N); ``masked`` (same shape, bool)
        marks the positions to generate (default: those equal to [MASK]). Positions not masked are never
        changed. ``history`` (a list) receives a (B, N) copy of the grid after each step (−1 = still masked).

        ``decoding="paper"`` (default): the published decoder — sample at temperature 1, confidence = the
        untempered probability of the sample, Gumbel choice noise ``choice_temperature``·(1 − (t+1)/T) on
        its log (default :data:`PAPER_CHOICE_TEMPERATURE` = 4.5). ``tau0``/``alpha``/``tau_min`` are refused.

        ``decoding="review"``: the review's §4.6 — sample from softmax(logits / τ_t), τ_t = max(τ_min, τ0·α^t)
        (defaults τ0 = 1, α = 0.9, τ_min = 0.1), confidence = the sample's probability under that tempered
        distribution, no choice noise unless ``choice_temperature`` > 0.

        ``greedy``: a deterministic decoder (either decoding) — take the most probable code instead of
        sampling, and no choice noise unless ``choice_temperature`` is given.
        """
        if self.config.causal:
            raise ValueError("decode() is the MaskGIT sampler; use generate_autoregressive() for causal=True")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        if decoding == "paper":
            if any(v is not None for v in (tau0, alpha, tau_min)):
                raise ValueError("tau0, alpha and tau_min set the review's τ_t schedule: pass decoding='review' "
                                 "(the paper samples at temperature 1)")
            ct = (0.0 if greedy else PAPER_CHOICE_TEMPERATURE) if choice_temperature is None else float(choice_temperature)
        else:
            tau0, alpha, tau_min = (1.0 if tau0 is None else tau0, 0.9 if alpha is None else alpha,
                                    0.1 if tau_min is None else tau_min)
            ct = 0.0 if choice_temperature is None else float(choice_temperature)
        if ct < 0:
            raise ValueError(f"choice_temperature must be ≥ 0, got {ct}")
        shape = tokens.shape
        k = tokens.reshape(shape[0], -1).long().clone()          # (B, N)
        m = (k == self.mask_id) if masked is None else masked.reshape(k.shape).bool().clone()
        k[m] = self.mask_id
        n0 = m.sum(1)                                            # (B,) masked at the start
        was = self.training
        self.eval()
        try:
            for t in range(steps):
                if not m.any():
                    break
                logits = self(k).float()                          # (B, N, K); ranking in float32
                tau = 1.0 if decoding == "paper" else temperature_at(t, tau0, alpha, tau_min)
                probs = F.softmax(logits / tau, -1)               # paper: τ = 1, the untempered probabilities
                if greedy:
                    sampled = probs.argmax(-1)                    # (B, N)
                elif decoding == "paper":                         # Gumbel-max: jax.random.categorical(logits)
                    sampled = k.clone()                           # drawn where still masked (the rest is kept)
                    lm = logits[m]                                # (n_masked, K)
                    sampled[m] = (lm + gumbel_like(lm, generator)).argmax(-1)
                else:                                             # the review's τ_t sampler, as first written
                    sampled = sample_categorical(probs, generator)
                conf = torch.gather(probs, -1, sampled[..., None])[..., 0].clamp_min(1e-30).log()  # log p(sample)
                if ct > 0:                                        # annealed choice noise, zero at the last step
                    conf = conf + choice_noise_scale(t, steps, ct) * gumbel_like(conf, generator)
                filled = torch.where(m, sampled, k)               # known positions keep their token
                conf = torch.where(m, conf, torch.full_like(conf, float("inf")))
                # how many of each sample's initially masked positions stay masked after this step
                keep_masked = torch.tensor([masked_counts(int(n), steps)[t] for n in n0.tolist()], device=k.device)
                keep_masked = torch.minimum(keep_masked, m.sum(1) - 1).clamp_min(0)
                rank = conf.argsort(1).argsort(1)                 # 0 = least confident
                m = rank < keep_masked[:, None]                   # re-mask the least confident
                k = torch.where(m, torch.full_like(filled, self.mask_id), filled)
                if history is not None:
                    history.append(torch.where(m, torch.full_like(k, -1), k).clone())
        finally:
            self.train(was)
        return k.view(shape)

    @torch.no_grad()
    def inpaint(self, tokens: torch.Tensor, box: tuple[int, int, int, int], **kw) -> torch.Tensor:
        """Regenerate the tokens inside ``box`` = (top, left, height, width) in token units; keep the rest.

        tokens (B, h, w) -> (B, h, w). MaskGIT: :meth:`decode` with the box masked (``kw``: ``decoding``, ``steps``…);
        causal: :meth:`fill_autoregressive` (``kw``: ``temperature``, ``greedy``, ``generator``).
        """
        region = box_region(tokens, box)
        if self.config.causal:
            return self.fill_autoregressive(tokens, region, **kw)
        return self.decode(tokens, region, **kw)

    @torch.no_grad()
    def fill_autoregressive(self, tokens: torch.Tensor, masked: torch.Tensor, temperature: float = 1.0,
                            greedy: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inpainting with the causal variant: the ``masked`` positions are drawn in raster order, each from
        p(k_i | k_<i) — the known tokens *before* i and the ones already drawn; a left-to-right prior cannot
        see the known tokens after i. Unmasked positions are kept. One forward pass per raster index that
        holds a masked position in any sample (no KV cache). tokens, masked (B, h, w) or (B, N) -> same shape.
        """
        if not self.config.causal:
            raise ValueError("fill_autoregressive() needs a causal=True model; MaskGIT inpaints with decode()")
        shape = tokens.shape
        k = tokens.reshape(shape[0], -1).long().clone()          # (B, N)
        m = masked.reshape(k.shape).bool()
        B, N = k.shape
        bos = torch.full((B, 1), self.mask_id, dtype=torch.long, device=k.device)
        was = self.training
        self.eval()
        for i in torch.nonzero(m.any(0)).flatten().tolist():
            logits = self(torch.cat([bos, k[:, :-1]], 1))[:, i]  # (B, K): p(k_i | k_<i)
            if greedy:
                draw = logits.argmax(-1)
            else:
                draw = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
            k[:, i] = torch.where(m[:, i], draw, k[:, i])
        self.train(was)
        return k.view(shape)

    # ---- likelihood ---------------------------------------------------------------------------------
    @torch.no_grad()
    def chain_rule_log_probs(self, tokens: torch.Tensor, order: str = "raster",
                             steps: int | None = None, masked: torch.Tensor | None = None) -> torch.Tensor:
        """log p(k_i | revealed context) of every true token, so that the row sum is log p(k). (B, h, w) or
        (B, N) -> (B, N) natural-log probabilities, in raster index order.

        Causal: the exact chain rule with teacher forcing, log p(k) = Σ_i log p(k_i | k_<i), one pass.

        MaskGIT: its conditionals turned into a proper likelihood by revealing the true tokens in a fixed
        procedure, starting from the all-[MASK] grid (what an order-agnostic autoregressive model does,
        Uria et al., "A deep and tractable density estimator", ICML 2014; Hoogeboom et al., ARDMs, ICLR 2022):

        * ``order="raster"``: reveal one token at a time in raster order, everything after it masked:
          Σ_i log p(k_i | k_<i, [MASK]…) — N passes;
        * ``order="confidence"``: MaskGIT's own order: at each step reveal the still-masked position whose
          predicted distribution is most confident (largest max_k p), chosen from the context only, never
          from the true token, so the product still sums to 1 over all grids — N passes;
        * ``steps=T``: reveal in T groups of the decoder's cosine schedule (:func:`masked_counts`), the
          tokens of a group scored independently given the context: the likelihood of the T-pass parallel
          sampler itself (with that order, greedy-confidence or raster) — T passes.

        ``masked`` (MaskGIT only; (B, h, w) or (B, N) bool, the same count in every row): the conditional
        likelihood of those positions given all the others, e.g. an inpainted box given its surroundings —
        the reveal starts from the grid with only these positions masked; the other entries of the result are 0.
        """
        k = tokens.reshape(tokens.shape[0], -1).long()           # (B, N)
        B, N = k.shape
        was = self.training
        self.eval()
        try:
            if self.config.causal:
                if masked is not None:
                    raise ValueError("masked= is for MaskGIT; the causal model scores every position")
                if order != "raster" or steps is not None:
                    raise ValueError("the causal model's likelihood is the raster-order chain rule (order='raster')")
                bos = torch.full((B, 1), self.mask_id, dtype=torch.long, device=k.device)
                logp = F.log_softmax(self(torch.cat([bos, k[:, :-1]], 1)), -1)     # (B, N, K)
                return logp.gather(-1, k[..., None])[..., 0]
            if order not in ("raster", "confidence"):
                raise ValueError(f"order must be 'raster' or 'confidence', got {order!r}")
            if masked is None:
                hidden = torch.ones(B, N, dtype=torch.bool, device=k.device)      # True = still [MASK]
            else:
                hidden = masked.reshape(B, N).bool().to(k.device).clone()
                if not (hidden.sum(1) == hidden[0].sum()).all():
                    raise ValueError("masked must hide the same number of positions in every row")
            n = int(hidden[0].sum())
            left = masked_counts(n, steps) if steps else list(range(n - 1, -1, -1))  # still masked after each step
            out = torch.zeros(B, N, device=k.device)
            idx = torch.arange(N, device=k.device).expand(B, N)
            for n_left in left:
                n_reveal = int(hidden[0].sum()) - n_left
                logp = F.log_softmax(self(torch.where(hidden, torch.full_like(k, self.mask_id), k)), -1)
                if order == "raster":
                    score = -idx.float()                                           # earliest first
                else:
                    score = logp.max(-1).values                                    # most confident first
                score = torch.where(hidden, score, torch.full_like(score, float("-inf")))
                pick = score.topk(n_reveal, 1).indices                             # (B, n_reveal)
                reveal = torch.zeros_like(hidden).scatter_(1, pick, True)
                out = torch.where(reveal, logp.gather(-1, k[..., None])[..., 0], out)
                hidden &= ~reveal
            return out
        finally:
            self.train(was)

    @torch.no_grad()
    def generate_autoregressive(self, B: int = 1, temperature: float = 1.0,
                                generator: torch.Generator | None = None) -> torch.Tensor:
        """Raster-order sampling with the causal variant: N forward passes (no KV cache) -> (B, h, w)."""
        if not self.config.causal:
            raise ValueError("generate_autoregressive() needs a causal=True model")
        was = self.training
        self.eval()
        N = self.N
        seq = torch.full((B, N), self.mask_id, dtype=torch.long, device=self.pos_emb.device)  # [BOS] then tokens
        out = torch.empty(B, N, dtype=torch.long, device=seq.device)
        for i in range(N):
            logits = self(seq)[:, i]                              # (B, K): p(k_i | k_<i)
            out[:, i] = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
            if i + 1 < N:
                seq[:, i + 1] = out[:, i]
        self.train(was)
        return out.view(B, *self.config.grid)


def box_region(tokens: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(B, h, w) bool, True inside ``box`` = (top, left, height, width) in token units."""
    if tokens.ndim != 3:
        raise ValueError(f"inpaint expects a (B, h, w) token grid, got shape {tuple(tokens.shape)}")
    top, left, hh, ww = box
    B, h, w = tokens.shape
    if not (0 <= top < h and 0 <= left < w and hh > 0 and ww > 0):
        raise ValueError(f"box {box} is outside the {h}×{w} token grid")
    region = torch.zeros(B, h, w, dtype=torch.bool, device=tokens.device)
    region[:, top:top + hh, left:left + ww] = True
    return region
