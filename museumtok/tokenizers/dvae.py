"""dvae: DALL·E's discrete VAE tokens (Ramesh et al., ICML 2021, arXiv:2102.12092), §4.4.

Each token is the argmax of the encoder's K logits at one position of the (S/f)×(S/f) grid (training
used Gumbel-softmax samples instead); see :mod:`museumtok.models.dvae`.

    image (3, S, S) ──Encoder──▶ logits (K, S/f, S/f) ──argmax──▶ k (S/f, S/f) ──e_k──▶ Decoder ──▶ x̂
"""
from __future__ import annotations

from ..models.dvae import DVAE
from .autoencoder import AutoencoderTokenizer


class DVAETokenizer(AutoencoderTokenizer):
    model_cls = DVAE
