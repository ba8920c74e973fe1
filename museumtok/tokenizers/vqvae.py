"""vqvae: VQ-VAE tokens (van den Oord et al., NeurIPS 2017, arXiv:1711.00937), §4.3.

Each token is the index of the codebook vector nearest to the encoder's output at one position of the
(S/f)×(S/f) grid; see :mod:`museumtok.models.vqvae` for the model and its data flow.

    image (3, S, S) ──Encoder──▶ z_e (D, S/f, S/f) ──nearest e_k──▶ k (S/f, S/f) ──e_k──▶ Decoder ──▶ x̂
"""
from __future__ import annotations

from ..models.vqvae import VQVAE
from .autoencoder import AutoencoderTokenizer


class VQVAETokenizer(AutoencoderTokenizer):
    model_cls = VQVAE
