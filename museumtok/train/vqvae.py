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

from ..losses import MultiTermLoss, MultiTermLossConfig, ema_usage_logits
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
                                                 # (the same f: a plain continuation)
    objective: str = "paper"                     # "paper": ‖x − x̂‖² + the VQ terms (eq. 3); "multi-term": the
                                                 # review's §7.2 L_rate + λ1 L_rec + λ2 L_perc (+ the VQ terms)
    multi: MultiTermLossConfig = field(default_factory=lambda: MultiTermLossConfig(
        rate="soft", tau=0.02, lambda_gan=0.0))  # the §7.2 terms (--multi.rate-weight …); τ in squared latent
                                                 # units (vqvae-f8-k1024's mean nearest distance is ≈ 0.02)


def multi_term_objective(m: MultiTermLossConfig):
    """``loss_fn`` for :func:`museumtok.train.autoencoder.fit`: §7.2's MultiTermLoss on a VQ-VAE's output.

    L_rate is the expected bits per pixel of the tokens under the quantizer's own running code usage
    (:func:`museumtok.losses.ema_usage_logits`, the prior a unigram range coder fitted now would use), on the
    soft assignment so that the encoder gets a gradient; the hard bits are logged beside it. L_gan needs a
    discriminator with its own optimizer (``museumtok train vqgan``) and L_text-align captions, so both are
    refused here rather than silently skipped.
    """
    if m.lambda_gan or m.lambda_text:
        raise ValueError("the VQ-VAE trainer has no discriminator and no captions: use --multi.lambda-gan 0 "
                         "--multi.lambda-text 0 (adversarial training is `museumtok train vqgan`)")
    loss = MultiTermLoss(m, aligner=None)

    def fn(x, out, model):
        q = model.quantizer
        if not q.ema:
            raise ValueError("the multi-term objective's prior is the EMA code counts: needs --model.ema true")
        loss.prior = ema_usage_logits(q)
        mt = loss(x, out.x_hat, out.quant.indices, z_e=out.z_e, codebook=q.codebook, vq_loss=out.quant.loss)
        if mt.skipped:
            raise ValueError(f"multi-term objective: terms could not be computed: {mt.skipped}")
        return mt.total, {**{f"mt_{k}": v for k, v in mt.terms.items()}, **mt.logged}

    fn.describe = lambda: (
        f"Objective: the review's §7.2 multi-term loss (`museumtok.losses.MultiTermLoss`) instead of the paper's "
        f"MSE: {m.rate_weight:g}·L_rate (expected bits per pixel under the EMA code usage, soft assignment at "
        f"τ = {m.tau:g}) + {m.lambda_rec:g}·{m.rec.upper()} + {m.lambda_perc:g}·L_perc ({loss.perceptual()[1]}) "
        f"+ {m.vq_weight:g}·the VQ terms.")
    return fn


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
        if donor.config.f == c.f:
            summary += f" Continued from `{src.name}` (all {grown['copied']} tensors copied)."
        else:
            summary += (f" Warm-started from `{src.name}` (f={donor.config.f}): its encoder and "
                        f"decoder levels and its codebook copied ({grown['copied']} tensors), the extra f={c.f} "
                        f"stage initialised ({grown['initialised']} tensors).")
    loss_fn = None
    if cfg.objective == "multi-term":
        loss_fn = multi_term_objective(cfg.multi)
        summary += " " + loss_fn.describe()
    elif cfg.objective != "paper":
        raise ValueError(f"objective must be 'paper' or 'multi-term', got {cfg.objective!r}")
    return run_job(cfg, name, model, VQVAETokenizer, command, summary, loss_fn=loss_fn)
