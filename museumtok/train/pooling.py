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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cards import write_model_card
from ..data.catalog import load_catalog
from ..data.dataset import _preload, eval_batch
from ..metrics import psnr
from ..models.pooling import PooledAutoencoder, PoolingConfig
from ..paths import CHECKPOINT_DIR
from . import register_trainer
from .anym import lr_at_progress
from .autoencoder import batch_for_step, model_kwargs


@dataclass
class PoolingTrainConfig:
    pooler: str = "tokenlearner"          # "tokenlearner" or "resampler"
    num_tokens: int = 16                  # M, tokens per image
    image_size: int = 64                  # working side S (training crops are S×S)
    f: int = 8                            # encoder downsampling
    channels: tuple[int, ...] = (16, 32, 64)        # conv widths
    num_res: int = 1                      # residual blocks per resolution
    dim: int = 64                         # token / attention width d
    enc_depth: int = 2                    # resampler pooler layers
    dec_depth: int = 2                    # decoding resampler layers
    heads: int = 4                        # attention heads
    ff_mult: int = 2                      # FFN width multiplier
    levels: tuple[int, ...] = (8, 5, 5, 5)          # FSQ levels; K = Π L_i
    steps: int = 3000                     # optimizer steps planned (the cosine schedule's length)
    max_minutes: float = 4.0              # wall-clock cap; training stops at whichever comes first
    batch_size: int = 16                  # crops per step
    lr: float = 2e-3                      # peak AdamW learning rate
    warmup: int = 50                      # linear warm-up steps
    max_zoom: float = 3.0                 # random crops: short side shrunk to [S, max_zoom·S]
    seed: int = 0                         # seeds init and crops
    eval_sets: tuple[str, ...] = field(default=("artworks-test", "kodak"))   # held-out sets in the card
    log_every: int = 50                   # record the training loss every this many steps
    out: str | None = None                # output folder; default data/checkpoints/pool-<pooler>-m<M>


def training_images(max_side: int = 768):
    """The training-split artworks, loaded once (a list of PIL images)."""
    return _preload(load_catalog(split="train", collection="artworks"), max_side, verify=False)


def fit_pooler(cfg: PoolingTrainConfig, images=None, model: PooledAutoencoder | None = None,
               progress=None) -> tuple[PooledAutoencoder, list[dict], float]:
    """Train ``cfg.pooler`` for ``cfg.steps`` steps or ``cfg.max_minutes``; returns (model in eval mode,
    history rows {step, mse, psnr, s}, wall seconds). Same crops and schedule for every pooler."""
    torch.manual_seed(cfg.seed)
    model = model or PooledAutoencoder(PoolingConfig(**model_kwargs(cfg, PoolingConfig)))
    images = images if images is not None else training_images()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    t0, cap, step, run, history = time.time(), cfg.max_minutes * 60, 0, 0.0, []
    model.train()
    while step < cfg.steps and time.time() - t0 < cap:
        p = max(step / cfg.steps, (time.time() - t0) / cap)
        for g in opt.param_groups:
            g["lr"] = lr_at_progress(p, step, cfg.lr, cfg.warmup)
        x = batch_for_step(images, step, cfg.batch_size, cfg.image_size, cfg.max_zoom, cfg.seed)
        _, loss = model(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run += float(loss.detach())
        step += 1
        if step % cfg.log_every == 0:
            mse = run / cfg.log_every
            history.append({"step": step, "mse": mse, "psnr": 10 * math.log10(1 / mse), "s": time.time() - t0})
            run = 0.0
            if progress:
                progress(history[-1])
    model.eval()
    return model, history, time.time() - t0


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
    torch.set_num_threads(1)
    name = f"pool-{cfg.pooler}-m{cfg.num_tokens}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    model, history, wall = fit_pooler(cfg, progress=lambda r: print(json.dumps(r), flush=True))
    model.save_pretrained(out)
    metrics = [held_out_psnr(model, s) for s in cfg.eval_sets]
    c = model.config
    n_train = len(load_catalog(split="train", collection="artworks"))
    steps = history[-1]["step"] if history else 0
    hist = ", ".join(f"{h['step']}: {h['psnr']:.2f}" for h in history[:: max(1, len(history) // 10)])
    write_model_card(
        out, name,
        summary=(f"Token autoencoder with a {c.pooler} pooler: conv encoder (f={c.f}) → {c.pooler} → M={c.num_tokens} "
                 f"tokens (width {c.dim}) → FSQ {list(c.levels)} (K={c.codebook_size}) → query-grid resampler "
                 f"(depth {c.dec_depth}) → conv decoder, on {c.image_size} px crops. Pooler parameters: "
                 f"{model.pooler_parameters():,}; whole model {sum(p.numel() for p in model.parameters()):,}. "
                 "Trained only to compare the two poolers at equal M (notebook 10), not for use as a tokenizer."),
        data=(f"random {cfg.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; test artworks and Kodak never seen"),
        steps=(f"{steps} AdamW steps of {cfg.batch_size} crops (stopped by "
               f"{'the planned steps' if steps >= cfg.steps else 'the wall-clock cap'})"),
        wall_time_s=wall, metrics=metrics, command=command,
        extra="\nTraining PSNR (step: dB): " + hist + "\n\nConfig: `" + str(asdict(cfg)) + "`\n",
        facts={"history": history, "steps_done": steps},
    )
    return out
