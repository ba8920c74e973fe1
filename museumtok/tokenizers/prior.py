"""A tokenizer's rate: the unigram prior of its codes, fitted on the training split, saved with its checkpoint.

A tokenizer's M indices cost M·log2 K bits as fixed-length codes; range-coded under a prior P(k) fitted
on the training artworks they cost −Σ log2 P(k_i) bits (:mod:`museumtok.entropy.unigram`, the maths).
This module is the tokenizer side: count the codes of every supported M on a split's centre working
crops, write the counts as ``prior.json`` beside ``model.safetensors`` (K integers per M) and read them
back, so that :meth:`Tokenizer.entropy_bits` and ``TokenizedImage.bits_coded`` are real coded sizes.

    trainer / `museumtok prior fit NAME` ──fit_priors(tok)──▶ data/checkpoints/<name>/prior.json
    registry.load(name) ──tok.load_priors(folder)──▶ tok.encode(img, M).bits_coded = prior[M].bits(indices)

The prior is a plain Laplace-smoothed unigram model (additive α = 0.5, Krichevsky–Trofimov), coded with
a range coder (Martin 1979); a context model would code tighter (§5.3), a unigram one is what every
tokenizer can carry in a few kilobytes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..entropy.unigram import UnigramPrior, load_priors, save_priors

PRIOR_FILE = "prior.json"          # beside config.json and model.safetensors
DEFAULT_SPLIT = "artworks-train"   # the split the tokenizers were trained on


@torch.no_grad()
def code_counts_on(tok, M: int, split: str = DEFAULT_SPLIT, batch: int = 16,
                   images: torch.Tensor | None = None) -> np.ndarray:
    """(K,) int64 counts of tokenizer ``tok``'s codes at M over the centre working crops of ``split``
    (or over ``images``, (N, 3, S, S) at ``tok.working_size(M)``)."""
    if images is None:
        from ..data.dataset import eval_batch

        images, _ = eval_batch(split, tok.working_size(M))
    counts = np.zeros(tok.K, np.int64)
    for i in range(0, len(images), batch):
        idx = tok.encode_tensor(images[i : i + batch], M).reshape(-1).long().cpu().numpy()
        counts += np.bincount(idx, minlength=tok.K)
    return counts


def fit_priors(tok, split: str = DEFAULT_SPLIT, Ms=None, alpha: float = 0.5) -> dict[int, UnigramPrior]:
    """{M: UnigramPrior} for every M in ``Ms`` (default: all of ``tok.supported_M``), fitted on ``split``.
    Images are loaded once per working size."""
    from ..data.dataset import eval_batch

    Ms = tuple(tok.supported_M if Ms is None else Ms)
    batches: dict[int, torch.Tensor] = {}
    priors = {}
    for M in Ms:
        S = tok.working_size(M)
        if S not in batches:
            batches[S] = eval_batch(split, S)[0]
        priors[int(M)] = UnigramPrior(code_counts_on(tok, M, images=batches[S]), alpha)
    return priors


def save_tokenizer_prior(tok, directory: str | Path, split: str = DEFAULT_SPLIT) -> Path:
    """Fit the prior of every supported M on ``split``, write ``directory/prior.json``, attach it to ``tok``
    and add its section to the model card (``README.md``) when there is one.

    The one call the trainers make once the checkpoint and its card are written; ``museumtok prior fit
    NAME`` makes it for an existing checkpoint."""
    directory = Path(directory)
    if hasattr(tok, "eval"):
        tok.eval()
    priors = fit_priors(tok, split)
    M0, p0 = min(priors.items())
    path = save_priors(directory / PRIOR_FILE, priors, tokenizer=getattr(tok, "name", type(tok).__name__),
                       split=split, images=int(p0.counts.sum()) // M0)
    tok.priors = priors
    card = directory / "README.md"
    if card.is_file():
        card.write_text(with_prior_section(card.read_text(encoding="utf-8"), prior_summary(directory)),
                        encoding="utf-8")
    return path


CARD_HEADING = "## Entropy-coding prior"


def with_prior_section(card: str, section: str | None) -> str:
    """The model card with its prior section replaced (or appended at the end)."""
    head, sep, rest = card.partition("\n" + CARD_HEADING + "\n")
    if sep:
        nxt = rest.find("\n## ")
        card = head.rstrip("\n") + "\n" + (rest[nxt:] if nxt >= 0 else "")
    if section is None:
        return card
    return card.rstrip("\n") + f"\n\n{CARD_HEADING}\n\n{section}\n"


def read_tokenizer_prior(directory: str | Path) -> dict[int, UnigramPrior]:
    """{M: prior} from ``directory/prior.json``, or {} when the checkpoint has none."""
    path = Path(directory) / PRIOR_FILE
    return load_priors(path)[0] if path.is_file() else {}


def prior_summary(directory: str | Path) -> str | None:
    """The model card's paragraph on ``prior.json``: what it holds and the coded bits per token at each M,
    or None when the folder has no prior."""
    path = Path(directory) / PRIOR_FILE
    if not path.is_file():
        return None
    priors, meta = load_priors(path)
    items = sorted(priors.items())
    per = ", ".join(f"M={M}: {p.entropy_bits():.2f}" for M, p in items[:4])
    if len(items) > 4:
        per += f", …, M={items[-1][0]}: {items[-1][1].entropy_bits():.2f}"
    return (f"`{PRIOR_FILE}` ({path.stat().st_size / 1024:.0f} KB) holds the code counts per M (K = {meta['K']} "
            f"integers each, {len(items)} values of M) of the {meta.get('images', '?')} {meta.get('split', '?')} "
            f"images' centre working crops: a unigram prior (α = {meta['alpha']:g}) under which the tokens are "
            f"range-coded (`bits_coded`) at about {per} bits per token, against log2 K = {np.log2(meta['K']):.2f} "
            "raw (a held-out bpp above, where given, is the raw M·log2 K). Refit with `museumtok prior fit NAME`.")


__all__ = ["PRIOR_FILE", "DEFAULT_SPLIT", "code_counts_on", "fit_priors", "save_tokenizer_prior",
           "read_tokenizer_prior", "prior_summary", "with_prior_section"]
