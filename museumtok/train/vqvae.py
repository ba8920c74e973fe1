"""``museumtok train vqvae``: a VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937) on the training artworks.

    python -m museumtok train vqvae                       # vqvae-f8-k1024 into data/checkpoints/
    python -m museumtok train vqvae --steps 200 --out /tmp/vq --run-dir /tmp/vq-run
    accelerate launch -m museumtok train vqvae …          # the same script on one or more GPUs

Rerunning with the same ``--run-dir`` resumes from its saved state (``--resume false`` starts over).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.vqvae import VQVAE, VQVAEConfig
from ..tokenizers.vqvae import VQVAETokenizer
from . import register_trainer
from .autoencoder import AutoencoderRunConfig, model_kwargs, run_job


@dataclass
class VQVAETrainConfig(AutoencoderRunConfig):
    # model (fields of museumtok.models.vqvae.VQVAEConfig)
    f: int = 8                                   # downsampling factor: S px -> (S/f)² tokens
    channels: tuple[int, ...] = (32, 64, 128, 128)  # widths at full res, 1/2, …, 1/f
    num_res: int = 1                             # residual blocks per resolution
    codebook_size: int = 1024                    # K
    dim: int = 32                                # D, code dimension
    beta: float = 0.25                           # β, commitment weight
    ema: bool = True                             # EMA codebook (no codebook loss)
    decay: float = 0.99                          # γ, EMA decay
    kmeans_init: bool = True                     # k-means initialisation on the first batch
    restart_dead_after: int = 50                 # restart codes unused for this many steps (0: never)
    cosine: bool = False                         # cosine-similarity lookup
    steps: int = 4000                            # optimizer steps (the lr schedule spans these)


@register_trainer("vqvae", VQVAETrainConfig, "VQ-VAE with an EMA codebook (§4.3)")
def train(cfg: VQVAETrainConfig, command: str = "museumtok train vqvae") -> Path:
    torch.manual_seed(cfg.seed)
    name = cfg.name or f"vqvae-f{cfg.f}-k{cfg.codebook_size}"
    model = VQVAE(VQVAEConfig(**model_kwargs(cfg, VQVAEConfig)))
    lookup = "cosine" if cfg.cosine else "Euclidean"
    summary = (
        f"VQ-VAE (van den Oord et al., NeurIPS 2017, arXiv:1711.00937): convolutional encoder/decoder with "
        f"{cfg.num_res} residual block(s) per level, widths {list(cfg.channels)}, downsampling f={cfg.f}, "
        f"K={cfg.codebook_size} codes of D={cfg.dim} ({lookup} nearest neighbour), "
        + ("EMA codebook (γ=" + f"{cfg.decay}), " if cfg.ema else "codebook loss, ")
        + f"β={cfg.beta}, " + ("k-means initialisation, " if cfg.kmeans_init else "")
        + (f"dead codes restarted after {cfg.restart_dead_after} unused steps. " if cfg.restart_dead_after else ". ")
        + f"M = (S/{cfg.f})² tokens for a working image of S px: 64 px → 64, 128 px → 256, 256 px → 1024."
    )
    return run_job(cfg, name, model, VQVAETokenizer, command, summary)
