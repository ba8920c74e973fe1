"""Notebook 09's error analysis (§9.3): which images a tokenizer gets wrong, and why.

* :func:`error_analysis` — per-image PSNR on a set, worst first, with content statistics
  (:mod:`museumtok.metrics.content`) and the statistic that best explains each image's rank;
* :func:`token_patch_mse` — the error of each token's patch;
* :func:`code_patches` — the image patches one code stands for, and what it decodes to;
* :func:`token_influence` — how far changing one token reaches in the decoded image;
* :func:`collapse_check` — is the codebook collapsed (a few codes take most tokens)?

The per-image numbers come from :func:`museumtok.eval.metrics.evaluate_tokenizer`, the same held-out
measurement as the bench's tokenizer rows.
"""
from __future__ import annotations

import torch

from .. import registry
from ..data.dataset import eval_batch
from ..metrics import codebook_stats
from ..metrics.content import difficulty_reasons, image_statistics
from .metrics import evaluate_tokenizer


def error_analysis(name: str, set_name: str = "artworks-test", M: int | None = None,
                   limit: int | None = None) -> list[dict]:
    """Per-image PSNR of one tokenizer on a set, worst first, with content statistics and a reason.

    The reason is the content statistic (:mod:`museumtok.metrics.content`, on the same working crop
    the tokenizer saw) that, weighted by its rank correlation with PSNR over the set, pushes the
    image furthest towards a low (or, for the better half, a high) PSNR.
    """
    tok = registry.load(name)
    M = tok.check_M(M)
    r = evaluate_tokenizer(tok, set_name, M, limit=limit, per_image=True)
    x, entries = eval_batch(set_name, tok.working_size(M), limit)
    stats = [image_statistics(xi) for xi in x]
    reasons = difficulty_reasons(stats, [p["psnr"] for p in r["per_image"]])
    rows = [{"id": e.id, "title": e.title, "artist": e.artist, "psnr": p["psnr"], "ssim": p["ssim"],
             **st, "reason": why, "index": i}
            for i, (e, p, st, why) in enumerate(zip(entries, r["per_image"], stats, reasons))]
    return sorted(rows, key=lambda d: d["psnr"])


def token_patch_mse(x: torch.Tensor, x_hat: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """MSE of each token's patch, (h, w), for a (3, S, S) image and its reconstruction on an h×w grid."""
    from einops import rearrange

    h, w = grid
    d = (x.double() - x_hat.double()) ** 2
    return rearrange(d, "c (h p1) (w p2) -> h w (c p1 p2)", h=h, w=w).mean(-1)


@torch.no_grad()
def code_patches(tok, x: torch.Tensor, M: int, code: int, max_n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """§9.3 step 2: the working-image patches a token id stands for, and what it decodes to.

    Encodes the (N, 3, S, S) batch ``x`` at ``M`` and returns (patches (n, 3, p, p) of the first
    ``max_n`` positions coded ``code``, their decoded patches (n, 3, p, p)), cut with the
    tokenizer's own token boxes (working pixels).
    """
    idx = tok.encode_tensor(x, M)                                  # (N, h, w) or (N, M)
    x_hat = tok.decode_indices(idx, M).clamp(0, 1)                 # (N, 3, S, S)
    boxes = tok.token_boxes(tuple(idx.shape[1:]), x.shape[-1]).round().long()  # (M, 4) xyxy
    flat = idx.reshape(len(x), -1)                                 # (N, M)
    hits = torch.nonzero(flat == code)[:max_n]                     # (n, 2): image, position
    orig, dec = [], []
    for i, pos in hits.tolist():
        x0, y0, x1, y1 = boxes[pos].tolist()
        orig.append(x[i, :, y0:y1, x0:x1])
        dec.append(x_hat[i, :, y0:y1, x0:x1])
    if not orig:
        return torch.empty(0, 3, 1, 1), torch.empty(0, 3, 1, 1)
    return torch.stack(orig), torch.stack(dec)


@torch.no_grad()
def token_influence(tok, indices: torch.Tensor, M: int, position: int, new_code: int | None = None) -> tuple[torch.Tensor, float]:
    """How far one token reaches in the decoded image.

    Changes the token at ``position`` of one image's ``indices`` (h, w) or (M,) to ``new_code``
    (default: the next code) and decodes both. Returns the (S, S) map of the mean absolute RGB change
    and the share of the total change that falls outside the token's own box: 0 for a patch
    codebook (each token decodes to its own patch), above 0 for a convolutional decoder whose
    receptive field spreads a token over its neighbours.
    """
    idx = indices.unsqueeze(0).clone()                                   # (1, h, w) or (1, M)
    flat = idx.view(1, -1)
    new_code = (int(flat[0, position]) + 1) % tok.K if new_code is None else int(new_code)
    a = tok.decode_indices(idx, M)[0]                                    # (3, S, S)
    flat[0, position] = new_code
    b = tok.decode_indices(idx, M)[0]
    change = (a - b).abs().mean(0)                                       # (S, S)
    x0, y0, x1, y1 = tok.token_boxes(tuple(indices.shape), change.shape[-1])[position].round().long().tolist()
    outside = change.clone()
    outside[y0:y1, x0:x1] = 0
    total = float(change.double().sum())
    return change, float(outside.double().sum()) / total if total > 0 else 0.0


def collapse_check(indices: torch.Tensor, K: int, top: int = 10, max_top_share: float = 0.5,
                   min_perplexity_ratio: float = 0.05) -> dict:
    """§9.3 step 4: does a small group of codes take most tokens? (codebook collapse)

    Collapse is flagged when the ``top`` most frequent codes take more than ``max_top_share`` of all
    tokens, or the perplexity is below ``min_perplexity_ratio`` × K.
    """
    st = codebook_stats(indices, K)
    counts = torch.bincount(indices.reshape(-1).long(), minlength=K)[:K]
    top_share = float(counts.sort(descending=True).values[:top].sum()) / max(1, st.n)
    collapsed = top_share > max_top_share or st.perplexity < min_perplexity_ratio * K
    return {**st.as_dict(), "top": top, "top_share": top_share, "perplexity_ratio": st.perplexity / K,
            "collapsed": collapsed}


__all__ = ["error_analysis", "token_patch_mse", "code_patches", "token_influence", "collapse_check"]
