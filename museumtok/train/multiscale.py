"""``museumtok train multiscale``: coarse 8×8 + fine residual 16×16 FSQ tokens on 128 px artwork crops."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cards import write_model_card
from ..data.catalog import load_catalog
from ..data.dataset import _preload
from ..models.multiscale import MultiScaleAutoencoder, MultiScaleConfig
from ..paths import CHECKPOINT_DIR
from ..tokenizers.multiscale import MultiScaleTokenizer
from . import register_trainer
from .anym import eval_curve, lr_at_progress
from .autoencoder import batch_for_step, model_kwargs


@dataclass
class MultiScaleTrainConfig:
    image_size: int = 128                 # working side S
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv widths at full res, 1/2, 1/4, 1/8
    num_res: int = 1                      # residual blocks per resolution
    dim: int = 64                         # latent width d
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels of both levels; K = Π L_i
    coarse_only_share: float = 0.5        # share of each batch decoded from the coarse level only
    steps: int = 3000                     # optimizer steps planned (the cosine schedule's length)
    max_minutes: float = 20.0             # wall-clock cap
    batch_size: int = 8                   # crops per step
    lr: float = 2e-3                      # peak AdamW learning rate
    warmup: int = 100                     # linear warm-up steps
    weight_decay: float = 1e-4            # AdamW weight decay
    max_zoom: float = 3.0                 # random crops: short side shrunk to [S, max_zoom·S]
    seed: int = 0                         # seeds init, crops and the level drops
    eval_sets: tuple[str, ...] = field(default=("artworks-val", "artworks-test", "kodak"))  # held-out sets
    log_every: int = 50                   # print the loss every this many steps
    out: str | None = None                # output folder; default data/checkpoints/multiscale-k{K}


@register_trainer("multiscale", MultiScaleTrainConfig, "two-level tokens: coarse 8×8 + fine residual 16×16 (§5.5)")
def train(cfg: MultiScaleTrainConfig, command: str = "museumtok train multiscale") -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    model = MultiScaleAutoencoder(MultiScaleConfig(**model_kwargs(cfg, MultiScaleConfig)))
    K = model.codebook_size
    name = f"multiscale-k{K}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    images = _preload(load_catalog(split="train", collection="artworks"), 768, verify=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    t0, cap, step, history, run = time.time(), cfg.max_minutes * 60, 0, [], {"coarse": [], "both": []}
    model.train()
    while step < cfg.steps and time.time() - t0 < cap:
        p = max(step / cfg.steps, (time.time() - t0) / cap)
        for group in opt.param_groups:
            group["lr"] = lr_at_progress(p, step, cfg.lr, cfg.warmup)
        x = batch_for_step(images, step, cfg.batch_size, cfg.image_size, cfg.max_zoom, cfg.seed)
        use_fine = torch.rand(x.shape[0], generator=g) >= cfg.coarse_only_share
        o = model(x, use_fine)
        opt.zero_grad(set_to_none=True)
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            per = ((o.x_hat - x) ** 2).flatten(1).mean(1)
            run["both"] += per[use_fine].tolist()
            run["coarse"] += per[~use_fine].tolist()
        step += 1
        if step % cfg.log_every == 0:
            rec = {"step": step, "min": (time.time() - t0) / 60}
            for k, v in run.items():
                if v:
                    rec[f"psnr_{k}"] = 10 * math.log10(1 / (sum(v) / len(v)))
            history.append(rec)
            print(json.dumps(rec), flush=True)
            run = {"coarse": [], "both": []}
    wall = time.time() - t0
    model.eval()
    tok = MultiScaleTokenizer(model)
    tok.name = name
    tok.save_pretrained(out)
    metrics = eval_curve(tok, cfg.eval_sets, tok.supported_M)
    hist = ", ".join(f"{h['step']}: {h.get('psnr_coarse', float('nan')):.2f}/{h.get('psnr_both', float('nan')):.2f}"
                     for h in history[:: max(1, len(history) // 12)])
    n_train = len(load_catalog(split="train", collection="artworks"))
    c = model.config
    write_model_card(
        out, name,
        summary=(f"Two-level multi-scale tokens on {c.image_size} px working crops: conv encoder (f=8) → coarse "
                 f"{c.coarse_grid}×{c.coarse_grid} FSQ grid ({c.coarse_grid**2} tokens) and a fine "
                 f"{c.fine_grid}×{c.fine_grid} FSQ grid of the residual ({c.fine_grid**2} tokens), FSQ levels "
                 f"{list(c.levels)} (K={K}) on both → conv decoder. M = {tok.supported_M[0]} (coarse) or "
                 f"{tok.supported_M[1]} (coarse + fine). {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters."),
        data=(f"random {cfg.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; validation and test artworks and Kodak never seen"),
        steps=f"{step} AdamW steps of {cfg.batch_size} crops ({cfg.coarse_only_share:.0%} of crops decoded from the coarse level only)",
        wall_time_s=wall, metrics=metrics, command=command,
        extra=("\nTraining PSNR (step: coarse only / coarse + fine, dB): " + hist + "\n\n"
               "MS-SSIM at 128 px uses 4 scales, weights renormalised.\n\nConfig: `" + str(asdict(cfg)) + "`\n"),
    )
    return out
