"""Quantizers, one file per method (§4.1–4.4, Appendix B)."""
from .lloyd import LloydResult, distortion, ema_step, fit_codebook, kmeans_pp_init, lloyd_step, minibatch_step, nearest

__all__ = ["LloydResult", "distortion", "ema_step", "fit_codebook", "kmeans_pp_init", "lloyd_step", "minibatch_step", "nearest"]
