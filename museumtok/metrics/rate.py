"""Rates: bits from real byte counts, bits per pixel, raw token bits."""
from __future__ import annotations

import math


def bits_from_bytes(data: bytes | int) -> int:
    """Bits actually spent by a bitstream (8 per byte, headers included)."""
    return 8 * (data if isinstance(data, int) else len(data))


def bpp(bits: float, height: int, width: int) -> float:
    """Bits per pixel of an image of height×width pixels."""
    return bits / float(height * width)


def raw_token_bits(M: int, K: int) -> float:
    """Bits of M tokens from a K-code codebook sent as fixed-length indices: M·log2 K."""
    return M * math.log2(K)
