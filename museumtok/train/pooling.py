"""``museumtok train pooling``: TokenLearner or Perceiver Resampler as the pooler of one small token
autoencoder (:class:`museumtok.models.pooling.PooledAutoencoder`), for a comparison at equal M (§10).

Both poolers get the same data order, steps, wall-clock cap, learning-rate schedule and seed; the
card reports held-out PSNR on the test artworks and Kodak. :func:`fit_pooler` is the same loop for a
few seconds (notebook 10's live demo); :func:`held_out_psnr` the evaluation.

    .venv/bin/museumtok train pooling --pooler tokenlearner --num-tokens 16 --max-minutes 4
    .venv/bin/museumtok train pooling --pooler resampler --num-tokens 16 --max-minutes 4
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.catalog import load_catalog
from ..data.dataset import _preload, eval_batch
from ..metrics import psnr
from ..models.pooling import PooledAutoencoder, PoolingConfig
from ..paths import CHECKPOINT_DIR
from . import nested_config, register_trainer
from .autoencoder import batch_for_step
from .harness import Harness, save_with_card


@nested_config
@dataclass
class PoolingTrainConfig:
    model: PoolingConfig = field(default_factory=PoolingConfig)   # the pooled autoencoder: --model.pooler (or
                                          # --pooler) tokenlearner|resampler, --num-tokens 16 …; crops are image_size px
    steps: int = 3000                     # optimizer steps planned (the cosine schedule's length)
    max_minutes: float = 4.0              # wall-clock cap; training stops at whichever comes first
    batch_size: int = 16                  # crops per step
    lr: float = 2e-3                      # peak AdamW learning rate
    warmup: int = 50                      # linear warm-up steps
    max_zoom: float = 3.0                 # random crops: short side shrunk to [S, max_zoom·S]
    seed: int = 0                         # seeds init and crops
    eval_sets: tuple[str, ...] = field(default=("artworks-test", "kodak"))   # held-out sets in the card
    log_every: int = 50                   # record the training loss every this many steps
    threads: int = 1                      # torch CPU threads (1 on a shared machine)
    device: str = "auto"                  # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"               # "fp32", or "bf16" autocast
    out: str | None = None                # output folder; default data/checkpoints/pool-<pooler>-m<M>


def training_images(max_side: int = 768):
    """The training-split artworks, loaded once (a list of PIL images)."""
    return _preload(load_catalog(split="train", collection="artworks"), max_side, verify=False)


def fit_pooler(cfg: PoolingTrainConfig, images=None, model: PooledAutoencoder | None = None,
               progress=None) -> tuple[PooledAutoencoder, list[dict], float]:
    """Train ``cfg.model.pooler`` for ``cfg.steps`` steps or ``cfg.max_minutes``; returns (model in eval mode,
    history rows {step, mse, psnr, s}, wall seconds). Same crops and schedule for every pooler."""
    torch.manual_seed(cfg.seed)
    model = model or PooledAutoencoder(cfg.model)
    images = images if images is not None else training_images()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    h = Harness(model, opt, steps=cfg.steps, warmup=cfg.warmup, max_minutes=cfg.max_minutes, schedule="progress",
                min_lr_ratio=0.05, clip=1.0, log_every=cfg.log_every, reduce="mean", on_log=progress,
                row_fn=lambda r: {"step": r["step"], "mse": r["mse"], "psnr": 10 * math.log10(1 / r["mse"]),
                                  "s": r["wall_s"]},
                device=cfg.device, precision=cfg.precision)

    def step_fn(m, x, step):
        _, loss = m(x)
        return loss, {"mse": loss}

    res = h.fit(step_fn, lambda step: batch_for_step(images, step, cfg.batch_size, cfg.model.image_size,
                                                     cfg.max_zoom, cfg.seed))
    return h.raw.cpu().eval(), h.history, res["wall_time_s"]


@torch.no_grad()
def held_out_psnr(model: PooledAutoencoder, set_name: str = "artworks-test", limit: int | None = None) -> dict:
    """Mean PSNR (dB) of the model's reconstructions of a held-out set at its working size."""
    x, entries = eval_batch(set_name, model.config.image_size, limit)
    x_hat = model.reconstruct(x)
    p = psnr(x, x_hat)
    return {"set": set_name, "M": model.num_tokens, "size": model.config.image_size, "images": len(entries),
            "psnr": float(p.mean()), "bits": model.num_tokens * math.log2(model.config.codebook_size)}


@register_trainer("pooling", PoolingTrainConfig, "TokenLearner or Perceiver Resampler pooler at equal M (§10)")
def train(cfg: PoolingTrainConfig, command: str = "museumtok train pooling") -> Path:
    torch.set_num_threads(cfg.threads)
    name = f"pool-{cfg.model.pooler}-m{cfg.model.num_tokens}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    model, history, wall = fit_pooler(cfg, progress=lambda r: print(json.dumps(r), flush=True))
    metrics = [held_out_psnr(model, s) for s in cfg.eval_sets]
    c = model.config
    n_train = len(load_catalog(split="train", collection="artworks"))
    steps = history[-1]["step"] if history else 0
    hist = ", ".join(f"{h['step']}: {h['psnr']:.2f}" for h in history[:: max(1, len(history) // 10)])
    save_with_card(
        model, out, name,
        summary=(f"Token autoencoder with a {c.pooler} pooler: conv encoder (f={c.f}) → {c.pooler} → M={c.num_tokens} "
                 f"tokens (width {c.dim}) → FSQ {list(c.levels)} (K={c.codebook_size}) → query-grid resampler "
                 f"(depth {c.dec_depth}) → conv decoder, on {c.image_size} px crops. Pooler parameters: "
                 f"{model.pooler_parameters():,}; whole model {sum(p.numel() for p in model.parameters()):,}. "
                 "Trained only to compare the two poolers at equal M (notebook 10), not for use as a tokenizer."),
        data=(f"random {c.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; test artworks and Kodak never seen"),
        steps=(f"{steps} AdamW steps of {cfg.batch_size} crops (stopped by "
               f"{'the planned steps' if steps >= cfg.steps else 'the wall-clock cap'})"),
        wall_time_s=wall, metrics=metrics, command=command,
        extra="\nTraining PSNR (step: dB): " + hist + "\n\nConfig: `" + str(asdict(cfg)) + "`\n",
        facts={"history": history, "steps_done": steps},
    )
    return out
