"""``museumtok train dvae``: DALL·E's discrete VAE (Ramesh et al. 2021, arXiv:2102.12092) on the training artworks.

    python -m museumtok train dvae                        # dvae-f8-k1024 into data/checkpoints/
    python -m museumtok train dvae --steps 200 --out /tmp/dv --run-dir /tmp/dv-run

The Gumbel-softmax temperature τ follows a (by default geometric) schedule from ``tau_start`` to ``tau_end`` over
the first ``tau_anneal`` fraction of the steps (DALL·E annealed 1 → 1/16), then stays at ``tau_end``.
Rerunning with the same ``--run-dir`` resumes from its saved state.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from ..models.dvae import DVAE, DVAEConfig
from ..quantize.gumbel import tau_schedule
from ..tokenizers.autoencoder import DVAETokenizer
from . import nested_config, register_trainer
from .autoencoder import AutoencoderRunConfig, RunLog, fit, held_out_eval, run_job


def tau_at(step: int, steps: int, tau_start: float, tau_end: float, anneal: float, kind: str = "exponential") -> float:
    """τ at ``step``: :func:`museumtok.quantize.gumbel.tau_schedule` over the first ``anneal``·steps steps."""
    return tau_schedule(step, tau_start, tau_end, steps=max(1, round(anneal * steps)), kind=kind)


@nested_config
@dataclass
class DVAETrainConfig(AutoencoderRunConfig):
    model: DVAEConfig = field(default_factory=lambda: DVAEConfig(kl_weight=3e-4))  # the dVAE: --model.kl-weight
                                                 # (or --kl-weight) …; λ_KL 3e-4 against the per-pixel MSE (≈ DALL·E's β 6.6)
    tau_start: float = 1.0                       # τ at step 0
    tau_end: float = 1 / 16                      # τ after annealing (DALL·E: 1/16)
    tau_anneal: float = 0.75                     # fraction of the steps over which τ is annealed
    tau_kind: str = "exponential"                # annealing curve: "exponential", "cosine" (DALL·E) or "linear"
    steps: int = 2400                            # optimizer steps (the lr and τ schedules span these)


def tau_callback(cfg: DVAETrainConfig):
    """The ``on_step`` hook of :func:`museumtok.train.autoencoder.fit` that anneals the model's τ; logs it."""
    def schedule(m: DVAE, step: int) -> dict:
        m.tau = tau_at(step, cfg.steps, cfg.tau_start, cfg.tau_end, cfg.tau_anneal, cfg.tau_kind)
        return {"tau": m.tau}
    return schedule


@torch.no_grad()
def relaxed_psnr(model: DVAE, x: torch.Tensor, seed: int = 0) -> float:
    """PSNR of the *training-time* forward pass on x (B, 3, S, S): the Gumbel-softmax sample at the model's
    current τ (soft mixture, or one-hot with ``hard``), seeded — what the decoder saw while it learned.
    The tokenizer's PSNR (:func:`museumtok.train.autoencoder.held_out_eval`) decodes the argmax codes instead."""
    from ..eval.metrics import image_metrics

    was = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x_hat = model(x).x_hat
    finally:
        model.train(was)
    return float(image_metrics(x, x_hat.clamp(0, 1), with_lpips=False)["psnr"].mean())


def compare_relaxations(cfg: DVAETrainConfig, images: Sequence, x_val: torch.Tensor, run_root: Path,
                        progress: bool = False) -> dict[str, dict]:
    """Train the same dVAE twice from the same seed, on the same crops for the same steps and τ schedule:
    once on the soft relaxed sample (``hard=False``, DALL·E's) and once straight-through (``hard=True``).

    Returns {"soft": …, "straight-through": …}, each with ``train`` (the train_log rows: loss, KL, batch
    usage/perplexity, τ), ``eval`` (the held-out rows of x_val, every ``cfg.eval_every`` steps), ``final``
    (held-out PSNR of the argmax tokens, codebook usage, perplexity, dead codes) and ``relaxed_psnr`` (the
    same images through the training-time sample at the final τ) — what each variant does to the codebook.
    """
    return compare_settings(cfg, {"soft": {"hard": False}, "straight-through": {"hard": True}}, images, x_val,
                            run_root, progress)


def compare_settings(cfg: DVAETrainConfig, variants: dict[str, dict], images: Sequence, x_val: torch.Tensor,
                     run_root: Path, progress: bool = False) -> dict[str, dict]:
    """Train one dVAE per variant (``{name: {field: value}}`` overriding ``cfg``), same seed, crops, steps
    and schedules otherwise; returns, per variant, what :func:`compare_relaxations` documents."""
    out = {}
    for name, overrides in variants.items():
        c = replace(cfg, **overrides, resume=False)
        torch.manual_seed(c.seed)
        model = DVAE(replace(c.model, tau=c.tau_start))
        run = Path(run_root) / name
        summary = fit(model, c, images, run, x_val=x_val, on_step=tau_callback(c), progress=progress)
        model.tau = tau_at(c.steps, c.steps, c.tau_start, c.tau_end, c.tau_anneal, c.tau_kind)
        log = RunLog(run)
        out[name] = {"model": model, "summary": summary, "train": log.rows("train"), "eval": log.rows("eval"),
                     "final": held_out_eval(model, x_val, c.model.codebook_size),
                     "relaxed_psnr": relaxed_psnr(model, x_val, c.seed)}
    return out


@register_trainer("dvae", DVAETrainConfig, "DALL·E discrete VAE with Gumbel-softmax (§4.4)")
def train(cfg: DVAETrainConfig, command: str = "museumtok train dvae") -> Path:
    torch.manual_seed(cfg.seed)
    c = cfg.model
    name = cfg.name or f"dvae-f{c.f}-k{c.codebook_size}"
    model = DVAE(replace(c, tau=cfg.tau_start))
    schedule = tau_callback(cfg)

    summary = (
        f"dVAE (Ramesh et al., ICML 2021, arXiv:2102.12092): the same convolutional encoder/decoder as "
        f"vqvae (widths {list(c.channels)}, {c.num_res} residual block(s) per level, f={c.f}); "
        f"the encoder's features give K={c.codebook_size} logits per position, trained with "
        f"{'straight-through (hard)' if c.hard else 'soft'} Gumbel-softmax samples, τ annealed "
        f"{cfg.tau_start:g} → {cfg.tau_end:g} over {cfg.tau_anneal:.0%} of the steps, KL to the uniform prior "
        f"weighted {c.kl_weight:g}, "
        + (f"KL of the batch-average posterior to uniform weighted {c.usage_weight:g} (against codebook collapse; "
           "not in DALL·E), " if c.usage_weight else "")
        + "mean-squared-error reconstruction; tokens are the argmax. "
        f"M = (S/{c.f})² tokens for a working image of S px: 64 px → 64, 128 px → 256, 256 px → 1024."
    )
    return run_job(cfg, name, model, DVAETokenizer, command, summary, on_step=schedule)
