"""Perceiver Resampler (Alayrac et al. 2022, "Flamingo: a Visual Language Model for Few-Shot
Learning", NeurIPS, arXiv:2204.14198, §2.1 and Appendix A.1.1), §5.4 of the review.

M learned latent vectors read a variable number N of feature vectors (the patches of any encoder)
through cross-attention; the latents are also among the keys and values, so one attention does the
cross- and the self-attention at once (the pseudo-code of Flamingo's Fig. 5, Appendix A.1.1:
``kv = concat([x_f, x])``; Fig. 4 is the gated cross-attention, :mod:`museumtok.models.gated_xattn`).
A feed-forward block follows each attention. The output is always M vectors, whatever N is: the
resampler is how Flamingo turns a variable number of image (and video-frame) features into a fixed
number of visual tokens, and Idefics2 (Laurençon, Tronchon, Cord & Sanh 2024, "What matters when
building vision-language models?", arXiv:2405.02246) pools SigLIP's patch features to 64 tokens per
image with the same kind of learned perceiver. The latents are the Perceiver's latent array (Jaegle
et al. 2021, "Perceiver: General Perception with Iterative Attention", ICML, arXiv:2103.03206).

Data flow (one layer of ``depth``; d = ``dim``, h heads)::

    x_f (B, N, D_in) ──Linear──▶ (B, N, d) ──LN──┐
    latents (M, d) ──repeat──▶ x (B, M, d) ──LN──┼─▶ q = x W_q          (B, h, M, d/h)
                                                 └─▶ k, v = [x_f; x] W_k, W_v   (B, h, N+M, d/h)
    A = softmax(q kᵀ / √(d/h))  (B, h, M, N+M)      x ← x + A v W_o
    x ← x + FFN(LN(x))                              ...depth times, then LN ─▶ (B, M, d)

There is no positional encoding inside: the resampler treats its N inputs as a set, so its output
does not change when the patches are permuted (tested). An encoder that wants position adds it to
its features before they come in (as :mod:`museumtok.models.anym` does). ``mask`` (B, N) hides
inputs (False = hidden): this is how the any-M decoder reads only the first m tokens.

Soft tokens for an LLM (:meth:`PerceiverResampler.soft_tokens`): the M continuous outputs projected
by one linear map to the LLM's embedding width, the way PaLM-E (Driess et al. 2023, "PaLM-E: An
Embodied Multimodal Language Model", ICML, arXiv:2303.03378) maps observation embeddings into the
word-embedding space and interleaves them with text. (The review's §5.4 puts a Perceiver Resampler
inside PaLM-E; PaLM-E has none, the resampler is Flamingo's: see data/errata.csv.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..checkpoint import HubMixin


@dataclass
class ResamplerConfig:
    dim: int = 96                 # width d of the latents and of every attention/FFN block
    num_latents: int = 64         # M, the number of learned latent queries (= output vectors)
    depth: int = 2                # number of (attention + FFN) layers
    heads: int = 4                # attention heads h; dim must be divisible by heads
    ff_mult: int = 2              # FFN hidden width = ff_mult · d
    input_dim: int | None = None  # width D_in of the incoming features; None: same as dim (no projection)
    latents_in_kv: bool = True    # Flamingo: the latents are also keys/values (False: pure cross-attention)
    q_init_scale: float = 1.0     # W_q's initial weights × this: > 1 starts with sharper (less uniform) attention


@dataclass
class ResamplerOutput:
    latents: torch.Tensor                 # (B, M, d) the resampled vectors, after the final LayerNorm
    attentions: list[torch.Tensor]        # per layer (B, h, M, N[+M]) attention weights, when requested
    n_inputs: int = 0                     # N, the number of input features (the first N attention columns)

    def patch_attention(self, layer: int = -1) -> torch.Tensor:
        """(B, M, N): each latent's attention over the N inputs, averaged over heads and
        renormalised over the inputs (the share it gives to the other latents removed)."""
        if not self.attentions:
            raise ValueError("call the resampler with return_attention=True")
        a = self.attentions[layer].mean(1)[..., : self.n_inputs]             # (B, M, N)
        return a / a.sum(-1, keepdim=True).clamp_min(1e-12)


class PerceiverAttention(nn.Module):
    """One multi-head attention of latents x (B, M, d) over [x_f; x] (B, N+M, d), pre-norm."""

    def __init__(self, dim: int, heads: int, input_dim: int | None = None, latents_in_kv: bool = True,
                 q_init_scale: float = 1.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.latents_in_kv = latents_in_kv
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.to_q.weight.mul_(q_init_scale)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x_f: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        x_f = self.norm_media(x_f)                                           # (B, N, d)
        x = self.norm_latents(x)                                             # (B, M, d)
        kv_in = torch.cat([x_f, x], dim=1) if self.latents_in_kv else x_f   # (B, N+M, d)
        q = rearrange(self.to_q(x), "b m (h e) -> b h m e", h=self.heads)    # (B, h, M, d/h)
        k, v = rearrange(self.to_kv(kv_in), "b n (two h e) -> two b h n e", two=2, h=self.heads)
        attn_mask = None
        if mask is not None:                                                 # (B, N) True = visible
            if self.latents_in_kv:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], x.shape[1])], dim=1)
            attn_mask = rearrange(mask.bool(), "b n -> b 1 1 n")
        if return_attention:
            s = torch.einsum("bhme,bhne->bhmn", q, k) * q.shape[-1] ** -0.5  # (B, h, M, N+M)
            if attn_mask is not None:
                s = s.masked_fill(~attn_mask, float("-inf"))
            a = s.softmax(-1)
            out = torch.einsum("bhmn,bhne->bhme", a, v)
        else:
            a = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(rearrange(out, "b h m e -> b m (h e)")), a


class FeedForward(nn.Sequential):
    """LN → Linear(d, r·d) → GELU → Linear(r·d, d), Flamingo's FFW."""

    def __init__(self, dim: int, mult: int = 2):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, mult * dim, bias=False), nn.GELU(),
                         nn.Linear(mult * dim, dim, bias=False))


class PerceiverResampler(nn.Module, HubMixin):
    """N feature vectors of any encoder in, M latent vectors out (Flamingo's Perceiver Resampler).

    Args: the fields of :class:`ResamplerConfig` (``PerceiverResampler(**asdict(cfg))`` or
    :meth:`from_config`).
    """

    def __init__(self, dim: int = 96, num_latents: int = 64, depth: int = 2, heads: int = 4,
                 ff_mult: int = 2, input_dim: int | None = None, latents_in_kv: bool = True,
                 q_init_scale: float = 1.0):
        super().__init__()
        self.config = ResamplerConfig(dim, num_latents, depth, heads, ff_mult, input_dim, latents_in_kv, q_init_scale)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * dim**-0.5)  # (M, d) learned queries
        self.project_in = nn.Linear(input_dim, dim) if input_dim and input_dim != dim else nn.Identity()
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, heads, latents_in_kv=latents_in_kv, q_init_scale=q_init_scale),
                           FeedForward(dim, ff_mult)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def from_config(cls, cfg: ResamplerConfig) -> "PerceiverResampler":
        return cls(**asdict(cfg))

    @property
    def num_latents(self) -> int:
        return self.latents.shape[0]

    def forward(self, x_f: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False,
                latents: torch.Tensor | None = None) -> ResamplerOutput:
        """x_f (B, N, D_in) -> ResamplerOutput(latents (B, M, d), attentions per layer).

        ``mask`` (B, N) bool, False hides an input; ``latents`` (M', d) or (B, M', d) replaces the
        learned queries (e.g. a positional query grid).
        """
        if x_f.dim() != 3:
            raise ValueError(f"expected features of shape (B, N, D), got {tuple(x_f.shape)}")
        x_f = self.project_in(x_f)                                           # (B, N, d)
        q0 = self.latents if latents is None else latents
        x = repeat(q0, "m d -> b m d", b=x_f.shape[0]) if q0.dim() == 2 else q0  # (B, M, d)
        maps = []
        for attn, ff in self.layers:
            a_out, a = attn(x_f, x, mask=mask, return_attention=return_attention)
            x = x + a_out
            x = x + ff(x)
            if a is not None:
                maps.append(a)
        return ResamplerOutput(self.norm(x), maps, n_inputs=x_f.shape[1])

    def soft_tokens(self, features: torch.Tensor, llm_width: int, projection: nn.Linear | None = None) -> torch.Tensor:
        """Continuous "soft tokens" for an LLM, PaLM-E style: features (B, N, D_in) -> (B, M, llm_width).

        The M resampled vectors go through one linear map into the LLM's word-embedding width, so
        they can be spliced into a sequence of text embeddings. The map is created on first use for
        each width and kept as ``self.to_llm[str(llm_width)]`` (train it with the LLM adapter), or
        pass your own ``projection``.
        """
        if projection is None:
            if not hasattr(self, "to_llm"):
                self.to_llm = nn.ModuleDict()
            key = str(int(llm_width))
            if key not in self.to_llm:
                self.to_llm[key] = nn.Linear(self.config.dim, int(llm_width)).to(self.latents.device)
            projection = self.to_llm[key]
        return projection(self.forward(features).latents)                     # (B, M, llm_width)
