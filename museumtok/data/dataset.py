"""Torch datasets over the catalog: random crops for training, deterministic crops for evaluation.

A tokenizer is used on whole artworks shrunk to a working size S (64, 128 or 256 px), so training
crops are taken at that scale too: each image is first shrunk so its short side lies between S and
``max_zoom``·S, then an S×S crop is cut (and flipped at random). Evaluation uses the same centre
crop as the app (:func:`museumtok.data.images.working_image`).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from .catalog import CatalogEntry, load_catalog
from .images import load_image, pil_to_tensor, working_image

#: Images are kept in memory with their short side at most this many pixels.
PRELOAD_SHORT_SIDE = 768


def _preload(entries: Sequence[CatalogEntry], short_side: int, verify: bool) -> list[Image.Image]:
    out = []
    for e in entries:
        img = load_image(e.find(verify=verify)).image
        w, h = img.size
        s = min(w, h)
        if s > short_side:
            r = short_side / s
            img = img.resize((max(1, round(w * r)), max(1, round(h * r))), Image.Resampling.LANCZOS)
        out.append(img)
    return out


class ArtworkCrops(Dataset):
    """S×S crops of catalog images as (3, S, S) float tensors in [0, 1].

    Args:
        split: "train", "val" or "test" (or a list of entries via ``entries``).
        size: crop side S in pixels.
        train: random scale, crop and horizontal flip when True; the centre working crop otherwise.
        crops_per_image: how many samples each image contributes per epoch (train mode).
        max_zoom: the largest short side, as a multiple of S, an image is shrunk to before cropping.
        collection: "artworks" (default) or "kodak".
        verify: check each file's sha256 against the catalog while loading.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 128,
        train: bool = True,
        crops_per_image: int = 16,
        max_zoom: float = 3.0,
        collection: str | None = "artworks",
        entries: Sequence[CatalogEntry] | None = None,
        verify: bool = False,
        seed: int = 0,
    ):
        if collection == "kodak" and train and entries is None:
            raise ValueError("Kodak is a test set and is never trained on")
        self.entries = list(entries) if entries is not None else load_catalog(split=split, collection=collection)
        if not self.entries:
            raise ValueError(f"no catalog images for split={split!r}, collection={collection!r}")
        self.size = size
        self.train = train
        self.crops_per_image = crops_per_image if train else 1
        self.max_zoom = max_zoom
        self.seed = seed
        self.images = _preload(self.entries, max(PRELOAD_SHORT_SIDE, size), verify)

    def __len__(self) -> int:
        return len(self.entries) * self.crops_per_image

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i % len(self.entries)]
        if not self.train:
            return working_image(img, self.size).x
        return random_crop(img, self.size, self.max_zoom, random)


def random_crop(img: Image.Image, size: int, max_zoom: float, rng: random.Random) -> torch.Tensor:
    """Shrink so the short side is in [size, max_zoom*size] (log-uniform), crop size×size, maybe flip."""
    w, h = img.size
    s = min(w, h)
    hi = min(s, max_zoom * size)
    target = size if hi <= size else math.exp(rng.uniform(math.log(size), math.log(hi)))
    r = target / s
    nw, nh = max(size, round(w * r)), max(size, round(h * r))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left = rng.randint(0, nw - size)
    top = rng.randint(0, nh - size)
    crop = img.crop((left, top, left + size, top + size))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return pil_to_tensor(crop)


def eval_batch(split_or_set: str, size: int, limit: int | None = None) -> tuple[torch.Tensor, list[CatalogEntry]]:
    """All images of a named set (``kodak``, ``artworks-test``...) as one (N, 3, S, S) batch."""
    from .catalog import named_set

    entries = named_set(split_or_set)[:limit]
    xs = [working_image(load_image(e.find()).image, size).x for e in entries]
    return torch.stack(xs), entries
