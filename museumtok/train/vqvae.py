"""``museumtok train vqvae``: a VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937) on the training artworks.

    python -m museumtok train vqvae                       # vqvae-f8-k1024 into data/checkpoints/
    python -m museumtok train vqvae --steps 200 --out /tmp/vq --run-dir /tmp/vq-run
    accelerate launch -m museumtok train vqvae …          # the same script on one or more GPUs

Rerunning with the same ``--run-dir`` resumes from its saved state (``--resume false`` starts over).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.vqvae import VQVAE, VQVAEConfig
from ..tokenizers.vqvae import VQVAETokenizer
from . import register_trainer
from .autoencoder import model_kwargs, run_job


@dataclass
class VQVAETrainConfig:
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
    # optimisation
    steps: int = 4000                            # optimizer steps (the lr schedule spans these)
    batch_size: int = 16                         # crops per step
    crop: int = 64                               # crop side S in pixels (64 px -> 8×8 tokens at f = 8)
    max_zoom: float = 3.0                        # images are shrunk to a short side in [S, max_zoom·S] before cropping
    lr: float = 1e-3                             # Adam peak learning rate
    warmup: int = 100                            # linear warm-up steps
    clip: float = 1.0                            # gradient-norm clip (0: none)
    seed: int = 0                                # seeds the weights, the crops and every restart
    threads: int = 1                             # torch CPU threads (1 on a shared machine)
    max_minutes: float = 30.0                    # wall-time cap; the card records where it stopped (0: none)
    # logging, evaluation, checkpoints
    log_every: int = 50                          # train_log.csv row every this many steps
    eval_every: int = 250                        # held-out evaluation every this many steps
    save_every: int = 250                        # resume state every this many steps
    eval_set: str = "artworks-val"               # held-out set evaluated during training
    eval_size: int = 128                         # its working size (128 px -> M = 256 at f = 8)
    final_eval_sets: tuple[str, ...] = field(default=("artworks-val", "artworks-test", "kodak"))  # for the card
    resume: bool = True                          # continue from <run_dir>/state when it exists
    run_dir: str | None = None                   # logs + resume state; default ~/.cache/museumtok/runs/<name>
    out: str | None = None                       # checkpoint folder; default data/checkpoints/<name>
    name: str | None = None                      # registry name; default vqvae-f{f}-k{K}


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
