"""The three ways of putting image tokens in an LLM prompt (review §6.1).

1. **prefix**: ``<image> t1 … tM </image>`` before the conversation. We put it in the system
   message, so the image stays the first thing in the prompt when old turns are dropped, and its KV
   cache is reused on every turn (§6.3).
2. **interleaved pointers** (our convention, after the review's §6.1; not Kosmos-2's format, see the
   erratum ``s6-1-kosmos-tag``: Kosmos-2, Peng et al. 2023, arXiv:2306.14824, links text spans to image
   regions with location tokens): the text names images with ``<IMG:id>`` tags, each replaced in place by that image's ``<image>…</image>`` block, so
   several images sit where the text talks about them.
3. **soft prefix**: continuous vectors (a Perceiver Resampler's M latents, §5.4) projected to the LLM
   width and spliced into ``inputs_embeds`` between the embedded text before and after, as PaLM-E
   (Driess et al. 2023, arXiv:2303.03378) injects continuous observations; no vocabulary is added.
   (Flamingo, Alayrac et al. 2022, does not prefix: it reads its resampler's latents through gated
   cross-attention layers inserted into the frozen LM, :mod:`museumtok.models.gated_xattn`.)

        prefix_ids      soft (M, d_r)          suffix_ids
           │                │                       │
      embed_tokens     projector (d_r→d)       embed_tokens
           └──────── cat along the sequence ────────┘ → inputs_embeds (1, n, d) → LLM
"""
from __future__ import annotations

import re

import torch

from .vocab import ImageVocab

GUIDE_PERSONA = ("You are a museum guide at an information desk. Answer the visitor briefly and "
                 "truthfully. The visitor's artwork is given as image tokens; cite a patch as [CITE:<token>].")
CARD_PREFIX = "Catalog card: "
POINTER = re.compile(r"<IMG:([A-Za-z0-9_.\-]+)>")


def image_block(tokens, vocab: ImageVocab | None = None, rows: bool = False) -> str:
    """``<image><ns:v3>…</image>`` for a TokenizedImage (or an index tensor with ``vocab``); ``rows``: one
    line per grid row (a newline ends each row, as the version-2 adapters are trained)."""
    if vocab is None:
        vocab = ImageVocab.for_tokenizer(tokens.tokenizer, tokens.K)
    idx = tokens.indices if hasattr(tokens, "indices") else tokens
    return vocab.to_text(idx, rows=rows)


def system_prompt(image_text: str | None = None, card: str | None = None, persona: str = GUIDE_PERSONA) -> str:
    parts = [persona]
    if card:
        parts.append(f"{CARD_PREFIX}{card}")
    if image_text:
        parts.append(f"The visitor's image: {image_text}")
    return "\n".join(parts)


def prefix_messages(image_text: str | None, question: str, history: list[dict] | None = None,
                    card: str | None = None, persona: str = GUIDE_PERSONA) -> list[dict]:
    """Format 1: system (persona, card, image) + history + the question."""
    return ([{"role": "system", "content": system_prompt(image_text, card, persona)}]
            + [dict(role=m["role"], content=m["content"]) for m in (history or [])]
            + [{"role": "user", "content": question}])


def interleave(text: str, images: dict[str, str]) -> str:
    """Format 2: replace each ``<IMG:id>`` in ``text`` by ``images[id]`` (an image block)."""
    def sub(m):
        key = m.group(1)
        if key not in images:
            raise KeyError(f"<IMG:{key}> names no image; known: {', '.join(images) or 'none'}")
        return images[key]
    return POINTER.sub(sub, text)


def interleaved_messages(text: str, images: dict[str, str], persona: str = GUIDE_PERSONA) -> list[dict]:
    return [{"role": "system", "content": persona}, {"role": "user", "content": interleave(text, images)}]


def soft_prefix_embeds(model, prefix_ids: torch.Tensor, soft: torch.Tensor, suffix_ids: torch.Tensor,
                       projector: torch.nn.Module | None = None) -> torch.Tensor:
    """Format 3: ``inputs_embeds`` (1, n, d) = [embed(prefix_ids); projector(soft); embed(suffix_ids)].

    ``soft`` is (M, d_r) or (1, M, d_r); ``projector`` maps d_r -> d (identity when omitted, which needs
    d_r = d). Feed the result as ``model(inputs_embeds=...)``."""
    emb = model.get_input_embeddings()
    d = emb.weight.shape[1]
    soft = soft.reshape(-1, soft.shape[-1])                     # (M, d_r)
    z = projector(soft) if projector is not None else soft      # (M, d)
    if z.shape[-1] != d:
        raise ValueError(f"soft tokens have width {z.shape[-1]}, the LLM expects {d}: pass a projector")
    pre = emb(torch.as_tensor(prefix_ids).reshape(-1).to(emb.weight.device))    # (P, d)
    suf = emb(torch.as_tensor(suffix_ids).reshape(-1).to(emb.weight.device))    # (S, d)
    return torch.cat([pre, z.to(pre.dtype).to(pre.device), suf], 0).unsqueeze(0)  # (1, P+M+S, d)
