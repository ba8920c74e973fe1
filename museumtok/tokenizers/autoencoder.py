"""Tokenizers backed by a discrete autoencoder: the token is the code index at one grid position.

One class, :class:`AutoencoderTokenizer`, wraps any model with ``f``, ``codebook_size``,
``encode_indices`` and ``decode_indices``; the registry names one subclass per model family, which only
says which model class ``from_pretrained`` loads:

- :class:`VQVAETokenizer`: VQ-VAE (van den Oord, Vinyals & Kavukcuoglu, NeurIPS 2017, arXiv:1711.00937),
  §4.3. Each token is the index of the codebook vector nearest to the encoder's output; see
  :mod:`museumtok.models.vqvae`.
- :class:`DVAETokenizer`: DALL·E's discrete VAE (Ramesh et al., ICML 2021, arXiv:2102.12092), §4.4. Each
  token is the argmax of the encoder's K logits (training used Gumbel-softmax samples instead); see
  :mod:`museumtok.models.dvae`.
- :class:`VQGANTokenizer`: VQ-GAN (Esser, Rombach & Ommer, CVPR 2021, arXiv:2012.09841), §4.5. The tokens
  are VQ-VAE tokens; only the training differs (perceptual + adversarial terms), see
  :mod:`museumtok.models.vqgan`. The discriminator is in the checkpoint but plays no part in coding.

A model with downsampling f turns a working image of S px into an (S/f)×(S/f) grid of indices, so M is
chosen through the working size: with f = 8, 64 px → 64 tokens, 128 px → 256 and 256 px → 1024.

    image ──working crop S×S──▶ x (1, 3, S, S) ──model.encode_indices──▶ k (1, S/f, S/f)
    k ──model.decode_indices──▶ x̂ (1, 3, S, S)

    VQ-VAE / VQ-GAN: x ──Encoder──▶ z_e (D, S/f, S/f) ──nearest e_k──▶ k ──e_k──▶ Decoder ──▶ x̂
    dVAE:            x ──Encoder──▶ logits (K, S/f, S/f) ──argmax──▶ k ──e_k──▶ Decoder ──▶ x̂

The checkpoint folder is the model's own (``config.json`` + ``model.safetensors``); the tokenizer
only adds the working sizes it serves.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..models.dvae import DVAE
from ..models.vqgan import VQGAN
from ..models.vqvae import VQVAE
from .base import Tokenizer

#: working sides S the app offers; with f = 8 these give M = 64, 256 and 1024
DEFAULT_SIZES = (64, 128, 256)


class AutoencoderTokenizer(Tokenizer):
    """Wrap a model with ``f``, ``codebook_size``, ``encode_indices`` and ``decode_indices``."""

    #: the model class ``from_pretrained`` loads (set by the subclasses below, one per registry family)
    model_cls: type = None

    def __init__(self, model, sizes: tuple[int, ...] = DEFAULT_SIZES):
        self.model = model.eval()
        self.sizes = tuple(int(s) for s in sizes)
        bad = [s for s in self.sizes if s % model.f]
        if bad:
            raise ValueError(f"working sizes {bad} are not multiples of the model's f={model.f}")

    @classmethod
    def from_pretrained(cls, path: str | Path, sizes: tuple[int, ...] = DEFAULT_SIZES, model_cls: type | None = None,
                        **kwargs):
        """Load ``config.json`` + ``model.safetensors`` from a checkpoint folder (never a pickle) into
        ``model_cls`` (default: the subclass's, e.g. :class:`VQVAETokenizer` loads a :class:`VQVAE`)."""
        model_cls = model_cls or cls.model_cls
        if model_cls is None:
            raise TypeError(f"{cls.__name__}.from_pretrained needs model_cls= (e.g. VQVAE), or use VQVAETokenizer, "
                            "DVAETokenizer or VQGANTokenizer")
        return cls(model_cls.from_pretrained(str(path), **kwargs), sizes)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path))

    def eval(self):
        self.model.eval()
        return self

    @property
    def f(self) -> int:
        return self.model.f

    @property
    def K(self) -> int:
        return self.model.codebook_size

    @property
    def supported_M(self) -> tuple[int, ...]:
        return tuple((s // self.f) ** 2 for s in self.sizes)

    def working_size(self, M: int) -> int:
        return dict(zip(self.supported_M, self.sizes))[M]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor, M: int | None = None) -> torch.Tensor:
        return self.model.encode_indices(x.float().to(self.device)).to(x.device)        # (B, S/f, S/f)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, M: int | None = None) -> torch.Tensor:
        return self.model.decode_indices(indices.long().to(self.device)).to(indices.device)  # (B, 3, S, S)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, D, h, w) code vectors e_k."""
        return self.model.quantizer.indices_to_codes(indices.long())


class VQVAETokenizer(AutoencoderTokenizer):
    """VQ-VAE tokens (§4.3): nearest codebook index."""

    model_cls = VQVAE


class DVAETokenizer(AutoencoderTokenizer):
    """dVAE tokens (§4.4): argmax of the encoder's logits."""

    model_cls = DVAE


class VQGANTokenizer(AutoencoderTokenizer):
    """VQ-GAN tokens (§4.5): VQ-VAE tokens with an adversarially trained decoder."""

    model_cls = VQGAN
