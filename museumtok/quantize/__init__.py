"""Quantizers, one file per method (§4.1–4.4, Appendix B)."""
from .fsq import FSQ, round_ste
from .gumbel import GumbelQuantizer, gumbel_softmax, kl_to_uniform, sample_gumbel, tau_schedule
from .lloyd import LloydResult, distortion, ema_step, fit_codebook, kmeans_pp_init, lloyd_step, minibatch_step, nearest
from .lfq import LFQ
from .output import QuantizerOutput, batch_stats
from .vq import VectorQuantizer, ema_update, laplace_smooth, nearest_code, squared_distances

__all__ = [
    "LloydResult", "distortion", "ema_step", "fit_codebook", "kmeans_pp_init", "lloyd_step", "minibatch_step", "nearest",
    "QuantizerOutput", "batch_stats",
    "VectorQuantizer", "ema_update", "laplace_smooth", "nearest_code", "squared_distances",
    "GumbelQuantizer", "gumbel_softmax", "kl_to_uniform", "sample_gumbel", "tau_schedule",
    "FSQ", "round_ste", "LFQ",
]
