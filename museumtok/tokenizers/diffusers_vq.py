"""Published VQ-GAN tokens through diffusers' ``VQModel`` (§4.5): aMUSEd's f16 tokenizer beside ours.

aMUSEd (Patil, Berman, Rombach & von Platen, "aMUSEd: an open MUSE reproduction", arXiv:2401.01808)
is a MUSE-style masked image model (Chang et al., "Muse", arXiv:2301.00704; decoding as in MaskGIT,
Chang et al., CVPR 2022, arXiv:2202.04200). Its image tokenizer is a VQ-GAN (Esser, Rombach & Ommer,
CVPR 2021, arXiv:2012.09841) with downsampling f = 16, published as the ``vqvae`` folder of
``amused/amused-256``: a 256 px image becomes 16×16 = 256 tokens.

    image ──working crop S×S, [0, 1]──▶ VQModel.encode ──▶ h (1, D, S/16, S/16)
          ──VQModel.quantize (nearest code)──▶ k (1, S/16, S/16)
    k ──quantize.get_codebook_entry──▶ VQModel.decode ──clip to [0, 1]──▶ x̂ (1, 3, S, S)

The pixels go in as [0, 1], as aMUSEd's pipeline feeds them (its ``VaeImageProcessor`` has
``do_normalize=False``). The folder is read from ``~/.cache/museumtok/weights/amused-256-vqvae`` (where
``museumtok weights add FOLDER`` puts it) or from the Hugging Face cache, offline
(``local_files_only=True``), safetensors only. K and f come from the folder's ``config.json``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .autoencoder import AutoencoderTokenizer

#: working sides S; with f = 16 these give M = 64, 256 and 1024
VQ_F16_SIZES = (128, 256, 512)


class VQModelAdapter(torch.nn.Module):
    """A diffusers ``VQModel`` seen through the interface :class:`AutoencoderTokenizer` expects."""

    def __init__(self, vq, normalize: bool = False):
        super().__init__()
        self.vq = vq.eval()
        self.normalize = bool(normalize)   # True: the model reads [-1, 1] pixels (aMUSEd's reads [0, 1])
        cfg = vq.config
        self.f = 2 ** (len(cfg.block_out_channels) - 1)
        self.codebook_size = int(cfg.num_vq_embeddings)
        self.embed_dim = int(cfg.vq_embed_dim or cfg.latent_channels)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, S/f, S/f) code indices."""
        x = x * 2 - 1 if self.normalize else x
        h = self.vq.encode(x).latents                                     # (B, D, S/f, S/f)
        b, _, hh, ww = h.shape
        return self.vq.quantize(h)[2][2].reshape(b, hh, ww)              # (B, S/f, S/f)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) code indices -> (B, 3, h·f, w·f) in [0, 1]."""
        b, hh, ww = indices.shape
        x = self.vq.decode(indices.reshape(-1), force_not_quantize=True, shape=(b, hh, ww, self.embed_dim)).sample
        x = (x + 1) / 2 if self.normalize else x
        return x.clamp(0, 1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, D, h, w) code vectors."""
        b, hh, ww = indices.shape
        return self.vq.quantize.get_codebook_entry(indices.reshape(-1).long(), (b, hh, ww, self.embed_dim))


class DiffusersVQTokenizer(AutoencoderTokenizer):
    """Tokens of a published diffusers ``VQModel`` (read-only: nothing here trains or saves it)."""

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.model.indices_to_codes(indices)

    def save_pretrained(self, path) -> None:
        self.model.vq.save_pretrained(str(path))


def load_vq_folder(folder: str | Path, normalize: bool = False) -> VQModelAdapter:
    """A ``VQModel`` from a folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), offline."""
    from diffusers import VQModel

    vq = VQModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    return VQModelAdapter(vq.float(), normalize)


def published_vq_tokenizer(weights_key: str, sizes: tuple[int, ...] = VQ_F16_SIZES,
                           normalize: bool = False) -> DiffusersVQTokenizer:
    """The registry's constructor: find the known folder ``weights_key`` (see :mod:`museumtok.weights`)."""
    from .. import weights as W

    folder = W.locate(weights_key)
    if folder is None:
        raise FileNotFoundError(W.missing_reason(weights_key))
    return DiffusersVQTokenizer(load_vq_folder(folder, normalize), sizes)


__all__ = ["VQModelAdapter", "DiffusersVQTokenizer", "load_vq_folder", "published_vq_tokenizer", "VQ_F16_SIZES"]
