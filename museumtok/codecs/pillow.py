"""JPEG and WebP through Pillow: the classical baselines, at a quality or at a bit budget.

``compress_at_bits`` searches the highest quality whose file spends at most the given bits (the
bits a tokenizer spent), so every tokenizer is shown beside a classical codec at equal bits. File
sizes include the headers: at tiny budgets JPEG cannot fit at all (its headers alone are a few
hundred bytes), which the result says instead of pretending.
"""
from __future__ import annotations

import io

import torch
from PIL import Image

from ..data.images import pil_to_tensor, tensor_to_pil
from .base import BudgetResult, Codec, EncodedImage


class PillowCodec(Codec):
    QUALITIES = range(1, 101)

    def __init__(self, fmt: str = "JPEG"):
        fmt = fmt.upper()
        if fmt not in ("JPEG", "WEBP"):
            raise ValueError(f"unsupported format {fmt!r}")
        self.fmt = fmt
        self.name = fmt.lower()

    def _save_kwargs(self, quality: int) -> dict:
        if self.fmt == "JPEG":
            return {"quality": int(quality), "optimize": True}
        return {"quality": int(quality), "method": 6}

    def compress(self, x: torch.Tensor, quality: int = 75) -> EncodedImage:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        buf = io.BytesIO()
        tensor_to_pil(x).save(buf, format=self.fmt, **self._save_kwargs(quality))
        return EncodedImage(buf.getvalue(), self.name, x.shape[-2], x.shape[-1], {"quality": int(quality)})

    def decompress(self, enc: EncodedImage | bytes) -> torch.Tensor:
        data = enc.data if isinstance(enc, EncodedImage) else enc
        return pil_to_tensor(Image.open(io.BytesIO(data)).convert("RGB"))

    def compress_at_bits(self, x: torch.Tensor, max_bits: float) -> BudgetResult:
        """Highest quality with bits ≤ ``max_bits`` (binary search, then a check of the next few)."""
        cache: dict[int, EncodedImage] = {}

        def enc(q: int) -> EncodedImage:
            if q not in cache:
                cache[q] = self.timed_compress(x, quality=q)
            return cache[q]

        lo, hi = 1, 100
        if enc(lo).bits > max_bits:
            return BudgetResult(enc(lo), False, max_bits, len(cache))
        while lo < hi:  # invariant: enc(lo) fits
            mid = (lo + hi + 1) // 2
            if enc(mid).bits <= max_bits:
                lo = mid
            else:
                hi = mid - 1
        for q in range(lo + 1, min(lo + 4, 101)):  # sizes are nearly, not strictly, monotone in q
            if enc(q).bits <= max_bits:
                lo = q
        return BudgetResult(enc(lo), True, max_bits, len(cache))
