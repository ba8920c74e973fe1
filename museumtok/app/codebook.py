"""The app's codebook-health panel (§4.3, §9.3): which codes one image uses, for the chosen tokenizer.

A pure callback: image, tokenizer name and M in; a usage histogram, the numbers and a short
explanation out. Bad input returns a message (:func:`museumtok.app.prepare.prepare`'s), never an exception.

Perplexity is exp H(p̂) over the image's M tokens (see :mod:`museumtok.metrics.codebook`). On a
single image at most min(M, K) codes can appear, so "dead" here means "not used by this image";
the model card reports usage over a whole held-out set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..metrics import code_counts, codebook_stats
from ..viz import codebook_usage_figure
from .prepare import prepare


@dataclass
class CodebookHealth:
    error: str | None = None
    figure: Any = None                              # plotly usage histogram
    stats: dict = field(default_factory=dict)       # K, M, used, usage, perplexity, dead, entropy_bits, max_perplexity
    markdown: str = ""


def codebook_health(source, tokenizer: str, M: int | None = None, lang: str = "en") -> CodebookHealth:
    """Usage histogram, perplexity and dead codes of ``tokenizer`` on one image at ``M`` tokens (bad input:
    :func:`museumtok.app.prepare.prepare`'s message in ``error``)."""
    p = prepare(source, tokenizer, M, encode=True, lang=lang)
    if isinstance(p, str):
        return CodebookHealth(error=p)
    t = p.tokens
    counts = code_counts(t.indices, t.K)
    st = codebook_stats(counts, t.K, counts=True)
    cap = min(t.M, t.K)
    stats = {"K": t.K, "M": t.M, **{k: v for k, v in st.as_dict().items() if k != "n"},
             "max_perplexity": float(cap)}
    md = (f"**{tokenizer}**, M = {t.M} tokens, K = {t.K} codes: **{st.used}** distinct codes used "
          f"({st.usage:.1%} of the codebook), **{st.dead}** not used, perplexity **{st.perplexity:.1f}** "
          f"(entropy {st.entropy_bits:.2f} bits per token against log2 K = {math.log2(t.K):.2f} raw).\n\n"
          f"One image of {t.M} tokens can use at most {cap} codes, so perplexity ≤ {cap}; a healthy codebook "
          "spreads an image's tokens over many codes, a collapsed one repeats a few. The model card gives "
          "usage over a whole held-out set.")
    if t.bits_coded is not None:   # the checkpoint's prior.json: the rate these tokens really cost
        stats["bits_coded"] = float(t.bits_coded)
        md += (f"\n\nRange-coded under the prior fitted on the training split: **{t.bits_coded:.0f} bits** "
               f"({t.bits_coded / t.M:.2f} per token) against {t.bits_raw:.0f} raw (M·log2 K).")
    return CodebookHealth(figure=codebook_usage_figure(counts), stats=stats, markdown=md)


def health_markdown(res: CodebookHealth) -> str:
    return f"**⚠ {res.error}**" if res.error else res.markdown
