"""Gated cross-attention dense blocks (Alayrac et al. 2022, "Flamingo: a Visual Language Model for Few-Shot
Learning", NeurIPS, arXiv:2204.14198, §2.2 and Fig. 4; per-image masking §2.3), the third way of §6.1 of the
review ("gated fusion"): the image never enters the LLM's context. A frozen LM reads visual latents (the
Perceiver Resampler's, :mod:`museumtok.models.resampler`) through new cross-attention layers inserted
before some of its decoder layers; each is gated by tanh(α) with α a learned scalar that starts at 0, so at
initialisation the model computes exactly what the LM alone computes (tested on the embedded SmolLM2).

One GATED XATTN-DENSE block, before frozen LM layer i (d = LM width; Flamingo's Fig. 4 pseudo-code)::

    y (B, L, d) text hidden states        x (B, T, n, d_v) latents of T images, n each
    y ← y + tanh(α_attn) · Attn(q = LN(y), kv = x, mask)        masked cross-attention
    y ← y + tanh(α_ff)   · FFW(LN(y))                            dense feed-forward
    y ← frozen LM layer i (self-attention + MLP)(y)

Mask (§2.3): a text position attends only to the latents of the *last image at or before it* in the
interleaved sequence (``only_immediate=False``: to every image before it); text before the first image
attends to nothing (its cross-attention output is exactly 0). Earlier images still reach it through the
LM's own self-attention. Image positions are marked by ``media_locations`` (B, L) (True at each image's
``<image>`` token); without it, a prompt with one image has every position read that image.

Where the blocks go: before layers k−1, 2k−1, … for ``every = k`` (open_flamingo's convention,
mlfoundations/open_flamingo ``flamingo_lm.py``). A block before every layer scores best in the paper's
ablation (§3.3), but it is slow: Flamingo-9B has one every 4th layer and Flamingo-80B every 7th.
:class:`GatedXAttnLM` inserts them with forward pre-hooks on the decoder layers, so the LM's own modules
and state dict are untouched and the blocks come off again with :meth:`GatedXAttnLM.remove`. The
LayerNorms inside the block follow open_flamingo (``helpers.py``: ``MaskedCrossAttention``,
``GatedCrossAttentionBlock``). Flamingo also learns the embeddings of its new ``<image>``/``<EOC>`` tokens;
how a marker is embedded is left to the caller here.

Visual path from a tokenizer's codes (:class:`CodeResampler`): indices (B, M) → the frozen codebook's
vectors (K, D) + a learned position per token → Perceiver Resampler → n latents (B, n, d_v).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .resampler import PerceiverResampler, ResamplerConfig


@dataclass
class GatedXAttnConfig:
    every: int = 4                  # a block before every k-th decoder layer (layers k-1, 2k-1, …); Flamingo-9B: 4, 80B: 7
    heads: int = 8                  # cross-attention heads
    dim_head: int = 64              # width of one head; the attention's inner width is heads · dim_head
    ff_mult: float = 4.0            # hidden width of the block's dense FFW = ff_mult · d (d: the LM's width)
    visual_dim: int | None = None   # width d_v of the visual latents (keys/values); None: the LM's width
    only_immediate: bool = True     # Flamingo: text reads only the last image before it (False: every earlier image)
    gate_init: float = 0.0          # α_attn = α_ff at initialisation; tanh(0) = 0 leaves the frozen LM's output unchanged


def media_attention_mask(media_locations: torch.Tensor, num_media: int, num_latents: int,
                         only_immediate: bool = True, offset: torch.Tensor | int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which visual keys each text position may read (Flamingo §2.3).

    ``media_locations`` (B, L) bool: True where an image starts (its ``<image>`` token); ``num_media`` T images
    of ``num_latents`` n latents each, in order of appearance; ``offset`` (B,) or int: images that came before
    this chunk (a continued KV cache). Returns ``allowed`` (B, L, T·n) bool and ``has_media`` (B, L) bool
    (False: no image before that position; it reads nothing)."""
    text_time = media_locations.long().cumsum(-1)                                   # (B, L) 1-based index of the last image
    if offset is not None:
        text_time = text_time + torch.as_tensor(offset, device=text_time.device).reshape(-1, 1)
    media_time = torch.arange(1, num_media + 1, device=text_time.device).repeat_interleave(num_latents)  # (T·n,)
    op = torch.eq if only_immediate else torch.ge
    allowed = op(text_time.unsqueeze(-1), media_time)                               # (B, L, T·n)
    return allowed, text_time > 0


class MaskedCrossAttention(nn.Module):
    """Multi-head attention of text hidden states (B, L, d) over visual latents (B, T, n, d_v), masked per image."""

    def __init__(self, dim: int, visual_dim: int, heads: int = 8, dim_head: int = 64, only_immediate: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.only_immediate = only_immediate
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(visual_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, y: torch.Tensor, media: torch.Tensor, media_locations: torch.Tensor | None = None,
                offset: torch.Tensor | int | None = None) -> torch.Tensor:
        """y (B, L, d), media (B, T, n, d_v), media_locations (B, L) bool or None (then T must be 1 and every
        position reads the image) -> (B, L, d); exactly 0 at positions with no image before them."""
        B, L, _ = y.shape
        T, n = media.shape[1], media.shape[2]
        q = rearrange(self.to_q(self.norm(y)), "b l (h e) -> b h l e", h=self.heads)         # (B, h, L, e)
        k, v = rearrange(self.to_kv(media.to(y.dtype)), "b t n (two h e) -> two b h (t n) e", two=2, h=self.heads)
        if media_locations is None:
            if T != 1:
                raise ValueError(f"{T} images per sample need media_locations (B, L) to say where each one is")
            out = F.scaled_dot_product_attention(q, k, v)                                   # (B, h, L, e)
        else:
            allowed, has = media_attention_mask(media_locations.bool(), T, n, self.only_immediate, offset)
            allowed = allowed | ~has.unsqueeze(-1)          # rows with no image: any mask (their output is zeroed)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
            out = out * has[:, None, :, None].to(out.dtype)
        return self.to_out(rearrange(out, "b h l e -> b l (h e)"))


class GatedCrossAttentionBlock(nn.Module):
    """Flamingo's GATED XATTN-DENSE: y + tanh(α_attn)·xattn(y, x), then + tanh(α_ff)·FFW(y)."""

    def __init__(self, dim: int, visual_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 ff_mult: float = 4.0, only_immediate: bool = True, gate_init: float = 0.0):
        super().__init__()
        hidden = max(1, int(round(ff_mult * dim)))
        self.attn = MaskedCrossAttention(dim, visual_dim or dim, heads, dim_head, only_immediate)
        self.attn_gate = nn.Parameter(torch.full((1,), float(gate_init)))                # α_attn
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden, bias=False), nn.GELU(),
                                nn.Linear(hidden, dim, bias=False))
        self.ff_gate = nn.Parameter(torch.full((1,), float(gate_init)))                  # α_ff

    def forward(self, y: torch.Tensor, media: torch.Tensor | None, media_locations: torch.Tensor | None = None,
                offset: torch.Tensor | int | None = None) -> torch.Tensor:
        """y (B, L, d) -> (B, L, d). ``media`` None: no image at all (the attention term is 0, the FFW still runs)."""
        if media is not None:
            y = y + self.attn_gate.tanh().to(y.dtype) * self.attn(y, media, media_locations, offset)
        return y + self.ff_gate.tanh().to(y.dtype) * self.ff(y)


def xattn_layer_indices(num_layers: int, every: int) -> list[int]:
    """Decoder layers that get a block in front: k-1, 2k-1, … (every = 1: all of them)."""
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    return [i for i in range(num_layers) if (i + 1) % every == 0]


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (Llama-style ``lm.model.layers``; a peft model is unwrapped)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    for path in ("model.layers", "model.decoder.layers", "transformer.h"):
        m = base
        try:
            for part in path.split("."):
                m = getattr(m, part)
        except AttributeError:
            continue
        if isinstance(m, nn.ModuleList):
            return m
    raise ValueError(f"cannot find the decoder layers of {type(base).__name__}")


class GatedXAttnLM(nn.Module):
    """A causal LM with gated cross-attention blocks in front of every ``cfg.every``-th decoder layer.

    ``freeze_lm``: the LM's own parameters stop requiring gradients (Flamingo trains only the new layers and
    the resampler). Use it as the LM::

        gx = GatedXAttnLM(lm, GatedXAttnConfig(every=4, visual_dim=128))
        out = gx(input_ids=ids, visual=latents, media_locations=ids == image_id)   # latents (B, n, d_v) or (B, T, n, d_v)

    or, to call the LM (or its inner ``model``) yourself, inside ``with gx.conditioned(latents, media_locations):``.
    ``media_token_id``: media_locations default to ``input_ids == media_token_id``. Continuing a KV cache, the
    images of the earlier call are remembered (``visual=None``), and new positions count the images seen before.
    """

    def __init__(self, lm: nn.Module, cfg: GatedXAttnConfig | None = None, media_token_id: int | None = None,
                 freeze_lm: bool = True):
        super().__init__()
        self.cfg = cfg or GatedXAttnConfig()
        self.lm = lm
        self.media_token_id = media_token_id
        layers = decoder_layers(lm)
        d = lm.get_input_embeddings().weight.shape[1]
        w = lm.get_input_embeddings().weight
        c = self.cfg
        self.layer_ids = xattn_layer_indices(len(layers), c.every)
        if not self.layer_ids:
            raise ValueError(f"every={c.every} puts no block into an LM of {len(layers)} layers")
        self.blocks = nn.ModuleDict({
            str(i): GatedCrossAttentionBlock(d, c.visual_dim or d, c.heads, c.dim_head, c.ff_mult, c.only_immediate,
                                             c.gate_init).to(device=w.device, dtype=w.dtype)
            for i in self.layer_ids})
        if freeze_lm:
            for p in lm.parameters():
                p.requires_grad_(False)
        self._media: torch.Tensor | None = None          # (B, T, n, d_v) while conditioned
        self._locations: torch.Tensor | None = None      # (B, L) bool or None
        self._offset: torch.Tensor | None = None         # (B,) images before the current chunk
        self._active = False
        self.last_media_count: torch.Tensor | None = None  # (B,) images seen up to the end of the last call
        self._last_visual: torch.Tensor | None = None     # the last call's images, reused when a cache continues
        self._handles = [layers[i].register_forward_pre_hook(self._make_hook(i), with_kwargs=True)
                         for i in self.layer_ids]

    # ---- hooks ---------------------------------------------------------------------------------------
    def _make_hook(self, i: int):
        block_key = str(i)

        def hook(module, args, kwargs):
            if not self._active:
                return None
            block = self.blocks[block_key]
            if args:
                y = block(args[0], self._media, self._locations, self._offset)
                return (y,) + tuple(args[1:]), kwargs
            y = block(kwargs["hidden_states"], self._media, self._locations, self._offset)
            return args, {**kwargs, "hidden_states": y}
        return hook

    @staticmethod
    def _as_media(visual: torch.Tensor | None) -> torch.Tensor | None:
        if visual is None:
            return None
        if visual.dim() == 3:
            return visual.unsqueeze(1)                                               # (B, 1, n, d_v)
        if visual.dim() != 4:
            raise ValueError(f"visual latents must be (B, n, d_v) or (B, T, n, d_v), got {tuple(visual.shape)}")
        return visual

    @contextmanager
    def conditioned(self, visual: torch.Tensor | None, media_locations: torch.Tensor | None = None,
                    offset: torch.Tensor | int | None = None):
        """Every forward of the LM inside the ``with`` runs the blocks on ``visual`` (None: text only)."""
        self._media, self._locations = self._as_media(visual), media_locations
        self._offset = None if offset is None else torch.as_tensor(offset).reshape(-1)
        self._active = True
        try:
            yield self
        finally:
            self._active = False

    def forward(self, input_ids: torch.Tensor | None = None, visual: torch.Tensor | None = None,
                media_locations: torch.Tensor | None = None, media_offset: torch.Tensor | int | None = None, **kw):
        """The LM's forward (same keyword arguments and output) with the blocks reading ``visual``."""
        if media_locations is None and self.media_token_id is not None and input_ids is not None:
            media_locations = input_ids == self.media_token_id
        cache = kw.get("cache", kw.get("past_key_values"))
        continuing = cache is not None and cache.get_seq_length() > 0
        if continuing and visual is None:
            visual = self._last_visual
        if continuing and media_offset is None and self.last_media_count is not None:
            media_offset = self.last_media_count
        media = self._as_media(visual)
        with self.conditioned(media, media_locations, media_offset):
            out = self.lm(input_ids=input_ids, **kw)
        self._last_visual = media
        B = (input_ids if input_ids is not None else kw["inputs_embeds"]).shape[0]
        seen = (torch.zeros(B, dtype=torch.long) if media_offset is None
                else torch.as_tensor(media_offset).reshape(-1).expand(B).clone())
        if media_locations is not None:
            seen = seen + media_locations.long().sum(-1).cpu()
        elif media is not None:
            seen = torch.full((B,), media.shape[1], dtype=torch.long)
        self.last_media_count = seen
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The blocks' parameters (what Flamingo trains besides the resampler)."""
        return list(self.blocks.parameters())

    def gates(self) -> dict[int, tuple[float, float]]:
        """layer -> (tanh α_attn, tanh α_ff)."""
        return {int(k): (float(b.attn_gate.detach().tanh()), float(b.ff_gate.detach().tanh())) for k, b in self.blocks.items()}

    def remove(self) -> nn.Module:
        """Take the hooks off and return the LM as it was."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.lm


# ---- the visual path: a tokenizer's codes -> resampler latents --------------------------------------------
@torch.no_grad()
def code_table(tokenizer) -> torch.Tensor:
    """(K, D) the codebook vector of every code k of a registry tokenizer (``indices_to_codes``), flattened."""
    K = tokenizer.K
    codes = tokenizer.indices_to_codes(torch.arange(K))
    return codes.reshape(K, -1).float().contiguous()


class CodeFeatures(nn.Module):
    """Image token indices (B, M) -> features (B, M, D): the frozen codebook vector of each code plus a learned
    vector for its position in the sequence (row-major for a grid; zero at initialisation).

    ``standardize``: each of the D components is centred and scaled over the K codes. Without it a dark and a
    light flat patch are the same vector up to its length, which the LayerNorm at the resampler's input
    removes: brightness would be lost before any attention."""

    def __init__(self, table: torch.Tensor, num_tokens: int, standardize: bool = True):
        super().__init__()
        table = table.float()
        if standardize:
            table = (table - table.mean(0)) / table.std(0).clamp_min(1e-6)
        self.register_buffer("table", table.clone(), persistent=True)              # (K, D), frozen
        self.pos = nn.Parameter(torch.zeros(num_tokens, table.shape[1]))          # (M, D)

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        idx = indices.reshape(indices.shape[0], -1).long()                         # (B, M)
        if idx.shape[1] != self.pos.shape[0]:
            raise ValueError(f"expected {self.pos.shape[0]} tokens per image, got {idx.shape[1]}")
        return self.table[idx] + self.pos                                          # (B, M, D)


class CodeResampler(nn.Module):
    """Codes (B, M) -> Perceiver Resampler latents (B, n, d_v): what the gated blocks read."""

    def __init__(self, table: torch.Tensor, num_tokens: int, cfg: ResamplerConfig | None = None):
        super().__init__()
        cfg = cfg or ResamplerConfig()
        cfg = ResamplerConfig(**{**asdict(cfg), "input_dim": table.shape[1]})
        self.features = CodeFeatures(table, num_tokens)
        self.resampler = PerceiverResampler.from_config(cfg)

    @property
    def dim(self) -> int:
        return self.resampler.config.dim

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.resampler(self.features(indices)).latents                     # (B, n, d_v)
