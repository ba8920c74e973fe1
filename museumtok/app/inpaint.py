"""The app's Inpaint tab (§4.6): hide the tokens the presenter draws over (or a box), let MaskGIT fill
them back, step by step.

A visitor stands in front of the painting: the tokens under the strokes are masked and the bundled
MaskGIT (trained on the 8×8 token grids of ``vqvae-f8-k1024`` at 64 px) regenerates them in T parallel
steps. ``decoding="paper"`` (default) is MaskGIT's published decoder (sample at τ = 1, keep the most
probable, annealed Gumbel choice noise); ``decoding="review"`` is the review's §4.6 schedule
τ_t = max(τ_min, τ0·α^t), the only one the temperature slider (τ0) acts on. Tokens outside the box never
change. Pure functions, unit-tested; ``app.py`` only wires them. MaskGIT comes from the registry (kind
"generator"), the image and its tokens from :func:`museumtok.app.prepare.prepare`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import registry
from ..data.images import tensor_to_pil
from .i18n import t as tr
from .prepare import no_source, prepare

MASKGIT = "maskgit-vqvae-f8-k1024-g8"   # registry name (kind "generator") of the bundled MaskGIT
TOKENIZER = "vqvae-f8-k1024"             # the frozen tokenizer it was trained on (its entry's ``tokenizer``)
M = 64                                   # its 8×8 grid (64 px working image, f = 8; its entry's ``default_M``)
SHOW = 512                               # displayed size (nearest-neighbour upscaling)
MASK_GREY = 0.5


def available() -> tuple[bool, str]:
    """(True, "") when the MaskGIT checkpoint and its tokenizer are bundled, else (False, what is missing)."""
    why = registry.get(MASKGIT).unavailable_reason
    return why is None, "" if why is None else f"{MASKGIT}: {why}"


def maskgit():
    """The bundled MaskGIT, loaded once per process (by the registry)."""
    return registry.load(MASKGIT)


def token_box(x0: float, y0: float, x1: float, y1: float, h: int, w: int) -> tuple[int, int, int, int]:
    """A box in fractions of the image (0…1) -> (top, left, height, width) in tokens, at least one token."""
    vals = [float(v) for v in (x0, y0, x1, y1)]
    if not all(0.0 <= v <= 1.0 for v in vals) or not (vals[0] < vals[2] and vals[1] < vals[3]):
        raise ValueError("the box needs 0 ≤ left < right ≤ 1 and 0 ≤ top < bottom ≤ 1 (fractions of the image)")
    left, top = min(int(vals[0] * w), w - 1), min(int(vals[1] * h), h - 1)
    right, bottom = max(math.ceil(vals[2] * w), left + 1), max(math.ceil(vals[3] * h), top + 1)
    return top, left, bottom - top, right - left


@dataclass
class InpaintResult:
    message: str = ""
    error: str | None = None
    original: Image.Image | None = None      # the working image the tokens describe
    masked: Image.Image | None = None        # the reconstruction with the masked tokens greyed out
    steps: list[Image.Image] = field(default_factory=list)   # after each decoding step (grey = still masked)
    result: Image.Image | None = None        # decoded from the filled-in grid
    tokens_before: torch.Tensor | None = None  # (8, 8)
    tokens_after: torch.Tensor | None = None   # (8, 8)
    box: tuple[int, int, int, int] | None = None  # (top, left, height, width) in tokens


def _show(x: torch.Tensor) -> Image.Image:
    return tensor_to_pil(x.clamp(0, 1)).resize((SHOW, SHOW), Image.NEAREST)


def _decode_with_grey(tok, grid: torch.Tensor, still_masked: torch.Tensor, f: int) -> Image.Image:
    """Decode a grid whose ``still_masked`` positions hold no token yet, and grey those patches out."""
    x = tok.decode_indices(torch.where(still_masked, torch.zeros_like(grid), grid)[None], M)[0]
    for i, j in still_masked.nonzero().tolist():
        x[:, i * f:(i + 1) * f, j * f:(j + 1) * f] = MASK_GREY
    return _show(x)


def region_from_strokes(strokes, h: int, w: int, min_cover: float = 0.2) -> torch.Tensor:
    """The tokens a drawing covers: ``strokes`` (H, W) bool or any array whose non-zero pixels were painted
    over the displayed working image; a token is hidden when at least ``min_cover`` of its patch is painted.
    Returns (h, w) bool."""
    m = torch.as_tensor(strokes).float()
    if m.dim() == 3:                                   # (H, W, C): painted where any channel / alpha is on
        m = m.amax(-1)
    m = (m > 0).float()[None, None]                    # (1, 1, H, W)
    cover = torch.nn.functional.adaptive_avg_pool2d(m, (h, w))[0, 0]
    return cover >= min_cover


def strokes_of(editor) -> "torch.Tensor | None":
    """The painted pixels of a ``gr.ImageEditor`` value (dict with "layers": RGBA arrays or images), or None."""
    import numpy as np

    if not isinstance(editor, dict):
        return None
    layers = [np.asarray(l) for l in (editor.get("layers") or []) if l is not None]
    if not layers:
        return None
    alpha = [l[..., 3] if l.ndim == 3 and l.shape[-1] == 4 else (l.max(-1) if l.ndim == 3 else l) for l in layers]
    painted = np.maximum.reduce(alpha) > 0
    return torch.from_numpy(painted) if painted.any() else None


def canvas_for(source, lang: str = "en") -> tuple[Image.Image | None, str]:
    """The working image the presenter draws on, upscaled for the screen; (image, message)."""
    if no_source(source):
        return None, tr("need_image", lang)
    ok, why = available()
    if not ok:
        return None, tr("inpaint_unavailable", lang, why=why)
    p = prepare(source, TOKENIZER, M, encode=True, lang=lang)
    if isinstance(p, str):
        return None, p
    return _show(p.tokens.working.x), ""


DECODINGS = ("paper", "review")          # MaskGIT's published decoder; the review's τ_t schedule


def inpaint_drawn(source, editor, steps: int = 8, temperature: float = 1.0, seed: int = 0,
                  lang: str = "en", decoding: str = "paper") -> InpaintResult:
    """Hide the tokens under what the presenter drew on the canvas (:func:`canvas_for`) and fill them in;
    with nothing drawn, the centre box is used and the message says so."""
    strokes = strokes_of(editor)
    if strokes is None:
        r = inpaint_image(source, steps=steps, temperature=temperature, seed=seed, lang=lang, decoding=decoding)
        if r.error is None:
            r.message = tr("inpaint_nobox", lang) + " " + r.message
        return r
    return inpaint_image(source, steps=steps, temperature=temperature, seed=seed, lang=lang, strokes=strokes,
                         decoding=decoding)


def inpaint_image(source, x0: float = 0.375, y0: float = 0.25, x1: float = 0.625, y1: float = 0.875,
                  steps: int = 8, temperature: float = 1.0, seed: int = 0, lang: str = "en",
                  strokes=None, decoding: str = "paper") -> InpaintResult:
    """Mask the tokens under the box (fractions of the image), or under ``strokes`` (painted pixels over the
    displayed working image), and let MaskGIT regenerate them. ``decoding``: "paper" (default; the
    ``temperature`` is not used) or "review" (``temperature`` is τ0 of τ_t = max(0.1, τ0·0.9^t))."""
    if no_source(source):
        return InpaintResult(error=tr("need_image", lang))
    ok, why = available()
    if not ok:
        return InpaintResult(error=tr("inpaint_unavailable", lang, why=why))
    try:
        steps = int(steps)
        temperature = float(temperature)
        if not 1 <= steps <= 64:
            raise ValueError(f"steps must be between 1 and 64, got {steps}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        decoding = (decoding or "paper").strip().lower()
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be 'paper' or 'review', got {decoding!r}")
    except ValueError as err:
        return InpaintResult(error=str(err))
    p = prepare(source, TOKENIZER, M, encode=True, lang=lang)
    if isinstance(p, str):
        return InpaintResult(error=p)
    tok, t = p.model, p.tokens
    grid = t.indices.long()                                            # (8, 8)
    h, w = grid.shape
    try:
        box = token_box(x0, y0, x1, y1, h, w) if strokes is None else None
    except ValueError as err:
        return InpaintResult(error=str(err))
    if box is not None:
        top, left, hh, ww = box
        region = torch.zeros_like(grid, dtype=torch.bool)
        region[top:top + hh, left:left + ww] = True
    else:
        region = region_from_strokes(strokes, h, w)
        if not region.any():
            region[h // 2, w // 2] = True
        rows, cols = region.nonzero()[:, 0], region.nonzero()[:, 1]
        box = (int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    top, left, hh, ww = box
    f = t.working.size // w
    history: list[torch.Tensor] = []
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        kw = {"tau0": temperature} if decoding == "review" else {}
        out = maskgit().decode(grid[None], region[None], steps=steps, decoding=decoding, generator=g,
                               history=history, **kw)[0]
        frames = [_decode_with_grey(tok, hs[0].view(h, w).clamp_min(0), hs[0].view(h, w) < 0, f) for hs in history]
        result = _show(tok.decode_indices(out[None], M)[0])
        masked = _decode_with_grey(tok, grid, region, f)
    changed = int((out != grid).sum())
    msg = tr("inpaint_msg", lang, n=int(region.sum()), N=h * w, r0=top, r1=top + hh - 1, c0=left, c1=left + ww - 1,
             T=len(history), changed=changed)
    msg += " " + (tr("inpaint_how_review", lang, tau0=f"{temperature:g}") if decoding == "review"
                  else tr("inpaint_how_paper", lang))
    return InpaintResult(msg, None, _show(t.working.x), masked, frames, result, grid, out, box)
