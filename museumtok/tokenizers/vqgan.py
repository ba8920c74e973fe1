"""vqgan: VQ-GAN tokens (Esser, Rombach & Ommer, CVPR 2021, arXiv:2012.09841), §4.5.

The tokens are VQ-VAE tokens (nearest codebook index on the (S/f)×(S/f) grid); only the training
differs (perceptual + adversarial terms), see :mod:`museumtok.models.vqgan`. The discriminator is in
the checkpoint but plays no part in encoding or decoding.
"""
from __future__ import annotations

from ..models.vqgan import VQGAN
from .autoencoder import AutoencoderTokenizer


class VQGANTokenizer(AutoencoderTokenizer):
    model_cls = VQGAN
