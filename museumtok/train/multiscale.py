"""``museumtok train multiscale``: coarse 8×8 + fine residual 16×16 FSQ tokens on 128 px artwork crops."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.catalog import load_catalog
from ..data.dataset import _preload
from ..models.multiscale import MultiScaleAutoencoder, MultiScaleConfig
from ..paths import CHECKPOINT_DIR
from ..tokenizers.multiscale import MultiScaleTokenizer
from . import nested_config, register_trainer
from .anym import eval_curve
from .autoencoder import batch_for_step
from .harness import Harness, save_with_card


@nested_config
@dataclass
class MultiScaleTrainConfig:
    model: MultiScaleConfig = field(default_factory=MultiScaleConfig)  # the two-level autoencoder: --model.dim (or
                                          # --dim), --levels, --coarse-only-share …; crops are model.image_size px
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
    threads: int = 1                      # torch CPU threads (1 on a shared machine)
    device: str = "auto"                  # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"               # "fp32", or "bf16" autocast
    out: str | None = None                # output folder; default data/checkpoints/multiscale-k{K}


@register_trainer("multiscale", MultiScaleTrainConfig, "two-level tokens: coarse 8×8 + fine residual 16×16 (§5.5)")
def train(cfg: MultiScaleTrainConfig, command: str = "museumtok train multiscale") -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = MultiScaleAutoencoder(cfg.model)
    K = model.codebook_size
    name = f"multiscale-k{K}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    images = _preload(load_catalog(split="train", collection="artworks"), 768, verify=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)

    def psnrs(r: dict) -> dict:   # PSNR of the mean per-crop MSE of each kind of crop since the last row
        rec = {"step": r["step"], "min": r["wall_s"] / 60}
        for k in ("coarse", "both"):
            if r.get(f"n_{k}"):
                rec[f"psnr_{k}"] = 10 * math.log10(1 / (r[f"sse_{k}"] / r[f"n_{k}"]))
        return rec

    h = Harness(model, opt, steps=cfg.steps, warmup=cfg.warmup, max_minutes=cfg.max_minutes, schedule="progress",
                min_lr_ratio=0.05, clip=1.0, log_every=cfg.log_every, reduce="sum", row_fn=psnrs, print_logs=True,
                device=cfg.device, precision=cfg.precision)

    def step_fn(m, x, step):
        use_fine = (torch.rand(x.shape[0], generator=g) >= cfg.model.coarse_only_share).to(x.device)
        o = m(x, use_fine)
        per = ((o.x_hat.detach().float() - x) ** 2).flatten(1).mean(1)
        return o.loss, {"sse_both": per[use_fine].sum(), "n_both": int(use_fine.sum()),
                        "sse_coarse": per[~use_fine].sum(), "n_coarse": int((~use_fine).sum())}

    res = h.fit(step_fn, lambda step: batch_for_step(images, step, cfg.batch_size, cfg.model.image_size,
                                                     cfg.max_zoom, cfg.seed))
    step, wall, history = res["steps"], res["wall_time_s"], h.history
    model = h.raw.cpu().eval()
    tok = MultiScaleTokenizer(model)
    tok.name = name
    metrics = eval_curve(tok, cfg.eval_sets, tok.supported_M)
    hist = ", ".join(f"{r['step']}: {r.get('psnr_coarse', float('nan')):.2f}/{r.get('psnr_both', float('nan')):.2f}"
                     for r in history[:: max(1, len(history) // 12)])
    n_train = len(load_catalog(split="train", collection="artworks"))
    c = model.config
    save_with_card(
        tok, out, name, prior=True,
        summary=(f"Two-level multi-scale tokens on {c.image_size} px working crops: conv encoder (f=8) → coarse "
                 f"{c.coarse_grid}×{c.coarse_grid} FSQ grid ({c.coarse_grid**2} tokens) and a fine "
                 f"{c.fine_grid}×{c.fine_grid} FSQ grid of the residual ({c.fine_grid**2} tokens), FSQ levels "
                 f"{list(c.levels)} (K={K}) on both → conv decoder. M = {tok.supported_M[0]} (coarse) or "
                 f"{tok.supported_M[1]} (coarse + fine). {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters."),
        data=(f"random {c.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; validation and test artworks and Kodak never seen"),
        steps=f"{step} AdamW steps of {cfg.batch_size} crops ({c.coarse_only_share:.0%} of crops decoded from the coarse level only)",
        wall_time_s=wall, metrics=metrics, command=command,
        extra=("\nTraining PSNR (step: coarse only / coarse + fine, dB): " + hist + "\n\n"
               "MS-SSIM at 128 px uses 4 scales, weights renormalised.\n\nConfig: `" + str(asdict(cfg)) + "`\n"),
    )
    return out
