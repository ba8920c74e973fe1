"""§4.6: generators over a tokenizer's tokens — MaskGIT and the autoregressive prior of the same size.

Kind "generator": they make no tokens of an image themselves (so they stay out of the tokenizer menus and
the benchmark table); they model the 8×8 token grids (M = 64, 64 px crops) of the frozen
``vqvae-f8-k1024``. The Inpaint tab, ``museumtok.eval`` and ``benchmarks/maskgit_vs_ar_quality.py`` load
them with ``registry.load(name)``; both are trained by ``museumtok train maskgit`` (see the model cards).
"""
from ..registry import RegistryEntry, register

register(RegistryEntry(
    name="maskgit-vqvae-f8-k1024-g8", kind="generator",
    target="museumtok.models.maskgit:MaskGIT",
    description="MaskGIT (Chang et al. 2022): bidirectional transformer over vqvae-f8-k1024's 8×8 token grids",
    chapter="4.6", supported_M=(64,), default_M=64, checkpoint="maskgit-vqvae-f8-k1024-g8",
    tokenizer="vqvae-f8-k1024",
))
register(RegistryEntry(
    name="ar-vqvae-f8-k1024-g8", kind="generator",
    target="museumtok.models.maskgit:MaskGIT",
    description="left-to-right autoregressive prior, MaskGIT's causal twin of the same size (the §4.6 baseline)",
    chapter="4.6", supported_M=(64,), default_M=64, checkpoint="ar-vqvae-f8-k1024-g8",
    tokenizer="vqvae-f8-k1024",
))
