"""The app's per-token attention overlay for resampler tokenizers (§5.4): a pure callback.

A 1-D resampler token has no patch; what it has is the attention of its latent over the encoder's
patches. ``token_attention`` shows that map on the working image, plus all M maps as a mosaic.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..data.images import working_image
from ..viz import attention_mosaic, attention_overlay
from .prepare import prepare


@dataclass
class AttentionResult:
    overlay: Image.Image | None = None    # the chosen token's attention on the working image
    mosaic: Image.Image | None = None     # every token's map, token 0 top left
    message: str = ""


def token_attention(source, name: str, M, token, size: int = 256, lang: str = "en") -> AttentionResult:
    """Attention of token ``token`` (0-based) among the first M tokens of ``name`` on ``source`` (bad input:
    :func:`museumtok.app.prepare.prepare`'s message)."""
    p = prepare(source, name, M, lang=lang)
    if isinstance(p, str):
        return AttentionResult(message=p)
    tok, M = p.model, p.M
    if not hasattr(tok, "attention_maps"):
        return AttentionResult(message=f"{name} has grid tokens: each token is its own patch (see the token grid).")
    try:
        token = int(token)
    except (TypeError, ValueError) as e:
        return AttentionResult(message=str(e))
    if not 0 <= token < M:
        return AttentionResult(message=f"token must be between 0 and {M - 1} for M = {M}")
    wi = working_image(p.image, tok.working_size(M))
    maps = tok.attention_maps(wi.x[None], M)[0]                         # (M, h, w)
    overlay = attention_overlay(wi.x, maps[token]).resize((size, size), Image.NEAREST)
    return AttentionResult(overlay, attention_mosaic(wi.x, maps, columns=8, scale=2),
                           f"token {token} of {M}: bright where its latent looked (last resampler layer, heads averaged)")
