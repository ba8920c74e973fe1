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
from ..tokenizers.autoencoder import VQVAETokenizer
from . import nested_config, register_trainer
from .autoencoder import AutoencoderRunConfig, run_job
from .harness import resolve_checkpoint


@nested_config
@dataclass
class VQVAETrainConfig(AutoencoderRunConfig):
    model: VQVAEConfig = field(default_factory=VQVAEConfig)  # the VQ-VAE: --model.f 16 (or --f 16), --model.codebook-size …
    steps: int = 4000                            # optimizer steps (the lr schedule spans these)
    init: str | None = None                      # warm start from a trained VQ-VAE of smaller f (folder or
                                                 # registry name; e.g. vqvae-f8-k1024 for f = 16): VQVAE.grow_from


@register_trainer("vqvae", VQVAETrainConfig, "VQ-VAE with an EMA codebook (§4.3)")
def train(cfg: VQVAETrainConfig, command: str = "museumtok train vqvae") -> Path:
    torch.manual_seed(cfg.seed)
    c = cfg.model
    name = cfg.name or f"vqvae-f{c.f}-k{c.codebook_size}"
    model = VQVAE(c)
    lookup = "cosine" if c.cosine else "Euclidean"
    summary = (
        f"VQ-VAE (van den Oord et al., NeurIPS 2017, arXiv:1711.00937): convolutional encoder/decoder with "
        f"{c.num_res} residual block(s) per level, widths {list(c.channels)}, downsampling f={c.f}, "
        f"K={c.codebook_size} codes of D={c.dim} ({lookup} nearest neighbour), "
        + ("EMA codebook (γ=" + f"{c.decay}), " if c.ema else "codebook loss, ")
        + f"β={c.beta}, " + ("k-means initialisation, " if c.kmeans_init else "")
        + (f"dead codes restarted after {c.restart_dead_after} unused steps" if c.restart_dead_after else "")
        + (f", usage term {c.usage_weight:g}·KL(q̄ ‖ uniform) on soft assignments at τ = {c.usage_tau:g} × the "
           "mean nearest distance (against unused codes; not in the paper)" if c.usage_weight else "") + ". "
        + f"M = (S/{c.f})² tokens for a working image of S px: "
        + ", ".join(f"{s} px → {(s // c.f) ** 2}" for s in (64, 128, 256, 512) if s >= 2 * c.f) + "."
    )
    if cfg.init:
        src = resolve_checkpoint(cfg.init)
        donor = VQVAE.from_pretrained(str(src))
        grown = model.grow_from(donor)
        summary += (f" Warm-started from `{src.name}` (f={donor.config.f}): its encoder and "
                    f"decoder levels and its codebook copied ({grown['copied']} tensors), the extra f={c.f} "
                    f"stage initialised ({grown['initialised']} tensors).")
    return run_job(cfg, name, model, VQVAETokenizer, command, summary)
