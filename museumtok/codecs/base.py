"""Codecs: image -> bytes -> image, with real byte counts (§3, §5).

Tokenizers and codecs meet on the same axes: a tokenizer's bits are M·log2 K (or its entropy-coded
size), a codec's bits are 8 × the length of the bitstream it actually wrote, headers included.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EncodedImage:
    data: bytes                       # the complete bitstream
    codec: str                        # registry name
    height: int
    width: int
    params: dict[str, Any] = field(default_factory=dict)  # e.g. {"quality": 37}
    encode_ms: float = 0.0

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def bpp(self) -> float:
        return self.bits / (self.height * self.width)


@dataclass
class BudgetResult:
    """A codec run at a bit budget: the best setting that fits, or the smallest it can do."""

    encoded: EncodedImage
    fits: bool          # False: even the lowest setting spends more than the budget
    budget_bits: float
    tries: int

    def note(self) -> str:
        e = self.encoded
        if self.fits:
            return f"{e.codec} quality {e.params.get('quality')} spends {e.bits} of {self.budget_bits:.0f} bits"
        return (f"{e.codec} cannot fit {self.budget_bits:.0f} bits at this size: its smallest file "
                f"(quality {e.params.get('quality')}) is {e.bits} bits")


class Codec(ABC):
    name: str = "codec"

    @abstractmethod
    def compress(self, x: torch.Tensor, **params) -> EncodedImage:
        """(3, H, W) in [0, 1] -> bitstream."""

    @abstractmethod
    def decompress(self, enc: EncodedImage | bytes) -> torch.Tensor:
        """bitstream -> (3, H, W) in [0, 1]."""

    def timed_compress(self, x: torch.Tensor, **params) -> EncodedImage:
        t0 = time.perf_counter()
        enc = self.compress(x, **params)
        enc.encode_ms = (time.perf_counter() - t0) * 1e3
        return enc
