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


# ----------------------------------------------------------------------------- §3.1 in closed form


def gaussian_rate(D: float, variance: float = 1.0) -> float:
    """Shannon's R(D) of a memoryless Gaussian source under MSE, in bits per sample.

    R(D) = max(0, ½·log2(σ²/D)): no code at D can spend fewer bits per sample (Cover & Thomas,
    Elements of Information Theory, Thm. 10.3.2).
    """
    if D <= 0:
        raise ValueError("distortion must be positive (zero distortion needs infinite rate)")
    return max(0.0, 0.5 * math.log2(variance / D))


def gaussian_distortion(R: float, variance: float = 1.0) -> float:
    """The inverse, D(R) = σ²·2^(−2R): each extra bit per sample divides the MSE by 4 (≈ 6.02 dB)."""
    return variance * 2.0 ** (-2.0 * R)


#: gap of an entropy-coded uniform scalar quantizer to R(D) at high rate: ½·log2(πe/6) ≈ 0.254 bit
#: per sample, i.e. 10·log10(πe/6) ≈ 1.53 dB (Gish & Pierce 1968).
HIGH_RATE_GAP_BITS = 0.5 * math.log2(math.pi * math.e / 6)


def lagrangian_best(rates, distortions, lmbda: float) -> int:
    """Index of the operating point minimising J = D + λ·R (§3.2's trade-off at a given λ)."""
    J = [d + lmbda * r for r, d in zip(rates, distortions)]
    return min(range(len(J)), key=J.__getitem__)
