"""Distortion, perceptual, rate and codebook metrics (§3.4, §4.3, §9.1)."""
from .codebook import CodebookStats, code_counts, codebook_stats, dead_codes, entropy_bits, perplexity
from .image import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_scales, mse, psnr, sharpness_ratio, ssim
from .perceptual import LPIPSUnavailable, lpips_available, lpips_distance
from .rate import bits_from_bytes, bpp, raw_token_bits

__all__ = [
    "CodebookStats", "code_counts", "codebook_stats", "dead_codes", "entropy_bits", "perplexity",
    "MS_SSIM_WEIGHTS", "ms_ssim", "ms_ssim_scales", "mse", "psnr", "sharpness_ratio", "ssim",
    "LPIPSUnavailable", "lpips_available", "lpips_distance", "bits_from_bytes", "bpp", "raw_token_bits",
]
