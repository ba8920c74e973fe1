"""The app's Inpaint tab (§4.6): hide the tokens under a box, let MaskGIT fill them back, step by step.

A visitor stands in front of the painting: the tokens under that box are masked and the bundled
MaskGIT (trained on the 8×8 token grids of ``vqvae-f8-k1024`` at 64 px) regenerates them in T parallel
steps with the temperature schedule τ_t = max(τ_min, τ0·α^t). Tokens outside the box never change.
Pure functions, unit-tested; ``app.py`` only wires them.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import registry
from ..data.images import ImageLoadError, load_image, tensor_to_pil
from ..paths import CHECKPOINT_DIR

MASKGIT = "maskgit-vqvae-f8-k1024-g8"   # checkpoint folder of the bundled MaskGIT
TOKENIZER = "vqvae-f8-k1024"             # the frozen tokenizer it was trained on
M = 64                                   # its 8×8 grid (64 px working image, f = 8)
SHOW = 256                               # displayed size (nearest-neighbour upscaling)
MASK_GREY = 0.5
_LOCK = threading.Lock()
_MODEL = {}


def available() -> tuple[bool, str]:
    ok = (CHECKPOINT_DIR / MASKGIT / "config.json").is_file() and registry.get(TOKENIZER).available
    return ok, "" if ok else f"the MaskGIT checkpoint {MASKGIT} or the tokenizer {TOKENIZER} is not bundled"


def maskgit():
    """The bundled MaskGIT, loaded once per process."""
    with _LOCK:
        if "m" not in _MODEL:
            from ..models.maskgit import MaskGIT

            _MODEL["m"] = MaskGIT.from_pretrained(str(CHECKPOINT_DIR / MASKGIT)).eval()
        return _MODEL["m"]


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


def inpaint_image(source, x0: float = 0.375, y0: float = 0.25, x1: float = 0.625, y1: float = 0.875,
                  steps: int = 8, temperature: float = 1.0, seed: int = 0) -> InpaintResult:
    """Mask the tokens under the box (fractions of the image) and let MaskGIT regenerate them."""
    if source is None or (isinstance(source, str) and not source.strip()):
        return InpaintResult(error="Upload an image or pick an artwork first.")
    ok, why = available()
    if not ok:
        return InpaintResult(error=f"Inpainting is unavailable: {why}.")
    try:
        steps = int(steps)
        temperature = float(temperature)
        if not 1 <= steps <= 64:
            raise ValueError(f"steps must be between 1 and 64, got {steps}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        loaded = load_image(source)
        tok = registry.load(TOKENIZER)
        t = tok.encode(loaded.image, M)
        grid = t.indices.long()                                        # (8, 8)
        h, w = grid.shape
        box = token_box(x0, y0, x1, y1, h, w)
    except ImageLoadError as err:
        return InpaintResult(error=f"Cannot use this file: {err}")
    except ValueError as err:
        return InpaintResult(error=str(err))
    top, left, hh, ww = box
    region = torch.zeros_like(grid, dtype=torch.bool)
    region[top:top + hh, left:left + ww] = True
    f = t.working.size // w
    history: list[torch.Tensor] = []
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        out = maskgit().inpaint(grid[None], box, steps=steps, tau0=temperature, generator=g, history=history)[0]
        frames = [_decode_with_grey(tok, hs[0].view(h, w).clamp_min(0), hs[0].view(h, w) < 0, f) for hs in history]
        result = _show(tok.decode_indices(out[None], M)[0])
        masked = _decode_with_grey(tok, grid, region, f)
    changed = int((out != grid).sum())
    msg = (f"{int(region.sum())} of {h * w} tokens masked (rows {top}–{top + hh - 1}, columns {left}–{left + ww - 1}); "
           f"MaskGIT filled them in {len(history)} parallel steps (τ0 = {temperature:g}); {changed} tokens differ from "
           f"the original. The model was trained for 10 minutes on a CPU: judge the mechanics, not the picture.")
    return InpaintResult(msg, None, _show(t.working.x), masked, frames, result, grid, out, box)
