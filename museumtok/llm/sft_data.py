"""Question–answer pairs for supervised fine-tuning an LLM to read image tokens (review §7.2–7.3).

Every answer is either computed from the pixels of the crop the tokens encode (so the model can
only get it right by reading the tokens) or a catalog fact of the artwork the crop comes from:

    crop x (3, S, S) ──tokenizer (frozen)──> indices (h, w) ──ImageVocab──> "<image><ns:v3>…</image>"
        │
        └── pixel facts (pure functions below): dominant colour, bright/dark, warm/cool, brightest side

Prompts follow §7.3's form (the review's "Khách:" / "Hướng dẫn viên:" in English)::

    <image> …tokens… </image>
    Visitor: What is the dominant colour of this detail?
    Guide: blue

The answer is always one of a fixed candidate list (:data:`CANDIDATES`), so held-out accuracy is
scored by ranking the candidates' log-likelihoods (no free-text matching).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

#: Named palette (sRGB in [0, 1]); the dominant colour is the palette entry most pixels are nearest to.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.75, 0.15, 0.12), "orange": (0.90, 0.55, 0.15), "yellow": (0.92, 0.85, 0.30),
    "green": (0.25, 0.55, 0.25), "blue": (0.20, 0.35, 0.70), "purple": (0.45, 0.25, 0.55),
    "brown": (0.45, 0.30, 0.18), "black": (0.06, 0.06, 0.06), "white": (0.93, 0.93, 0.90),
    "grey": (0.50, 0.50, 0.50),
}
LUMA = torch.tensor([0.299, 0.587, 0.114])   # Rec. 601 luma weights
BRIGHT_THRESHOLD = 0.45                      # mean luma above this -> "bright"

QUESTIONS: dict[str, str] = {
    "colour": "What is the dominant colour of this detail?",
    "brightness": "Is this detail bright or dark?",
    "warmth": "Is the palette of this detail warm or cool?",
    "brightest": "Where is the brightest part of this detail: left, right, top or bottom?",
    "title": "What is the title of this artwork?",
    "artist": "Who made this artwork?",
}
PIXEL_KINDS = ("colour", "brightness", "warmth", "brightest")
CATALOG_KINDS = ("title", "artist")
CANDIDATES: dict[str, tuple[str, ...]] = {
    "colour": tuple(PALETTE), "brightness": ("bright", "dark"), "warmth": ("warm", "cool"),
    "brightest": ("left", "right", "top", "bottom"),
}


def _check(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected one image (3, H, W) in [0, 1], got shape {tuple(x.shape)}")
    return x.float()


def luma(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (H, W) luma Y = 0.299 R + 0.587 G + 0.114 B."""
    return torch.einsum("c,chw->hw", LUMA, _check(x))


def dominant_colour(x: torch.Tensor) -> str:
    """The palette name most pixels are nearest to (Euclidean in RGB)."""
    x = _check(x)
    pal = torch.tensor(list(PALETTE.values()))                     # (P, 3)
    px = x.reshape(3, -1).T                                        # (H*W, 3)
    nearest = torch.cdist(px, pal).argmin(1)                       # (H*W,)
    counts = torch.bincount(nearest, minlength=len(pal))
    return list(PALETTE)[int(counts.argmax())]


def brightness(x: torch.Tensor) -> str:
    """"bright" when the mean luma exceeds :data:`BRIGHT_THRESHOLD`, else "dark"."""
    return "bright" if float(luma(x).mean()) > BRIGHT_THRESHOLD else "dark"


def warmth(x: torch.Tensor) -> str:
    """"warm" when mean red exceeds mean blue, else "cool"."""
    x = _check(x)
    return "warm" if float(x[0].mean()) > float(x[2].mean()) else "cool"


def brightest_side(x: torch.Tensor) -> str:
    """Which half (left, right, top, bottom) has the highest mean luma (ties: that order)."""
    y = luma(x)                                                    # (H, W)
    H, W = y.shape
    halves = {"left": y[:, : W // 2], "right": y[:, W - W // 2:], "top": y[: H // 2], "bottom": y[H - H // 2:]}
    means = {k: float(v.mean()) for k, v in halves.items()}
    return max(means, key=lambda k: (means[k], -list(halves).index(k)))


PIXEL_FACTS = {"colour": dominant_colour, "brightness": brightness, "warmth": warmth, "brightest": brightest_side}


def pixel_answers(x: torch.Tensor) -> dict[str, str]:
    """All pixel-derived answers for one crop (3, H, W)."""
    return {k: f(x) for k, f in PIXEL_FACTS.items()}


@dataclass
class QAExample:
    indices: torch.Tensor   # (M,) image token indices of the crop (row-major)
    kind: str               # a key of QUESTIONS
    question: str
    answer: str
    image_id: str           # the artwork the crop comes from
    crop: int = 0           # which crop of the build (examples of one crop share it)


def format_prompt(image_text: str | None, question: str) -> str:
    """§7.3's form: image block, "Visitor: …", then "Guide:" (the answer follows after a space)."""
    head = f"{image_text}\n" if image_text else ""
    return f"{head}Visitor: {question}\nGuide:"


def random_crops(entries: Sequence, images: Sequence, n: int, size: int, rng: random.Random,
                 max_zoom: float = 3.0) -> list[tuple[object, torch.Tensor]]:
    """``n`` (entry, crop (3, S, S)) pairs: random artwork, random scale/crop/flip (data.dataset.random_crop)."""
    from ..data.dataset import random_crop

    out = []
    for _ in range(n):
        i = rng.randrange(len(entries))
        out.append((entries[i], random_crop(images[i], size, max_zoom, rng)))
    return out


def build_examples(crops: Sequence[tuple[object, torch.Tensor]], tokenizer, M: int,
                   kinds: Sequence[str] = PIXEL_KINDS + CATALOG_KINDS, batch: int = 64) -> list[QAExample]:
    """Tokenize the crops with the frozen image tokenizer and make one example per (crop, kind)."""
    out = []
    for s in range(0, len(crops), batch):
        chunk = crops[s:s + batch]
        x = torch.stack([c for _, c in chunk])                      # (B, 3, S, S)
        with torch.no_grad():
            idx = tokenizer.encode_tensor(x, M).reshape(len(chunk), -1)   # (B, M)
        for j, ((entry, crop), ind) in enumerate(zip(chunk, idx)):
            ans = pixel_answers(crop)
            for kind in kinds:
                a = ans[kind] if kind in ans else getattr(entry, kind)
                out.append(QAExample(ind.clone(), kind, QUESTIONS[kind], a, entry.id, s + j))
    return out


def load_split(split: str, short_side: int = 384, limit: int | None = None):
    """(entries, PIL images) of the artworks of one split (the first ``limit``), preloaded small."""
    from ..data.catalog import load_catalog
    from ..data.dataset import _preload

    entries = load_catalog(split=split, collection="artworks")[:limit]
    return entries, _preload(entries, short_side, verify=False)
