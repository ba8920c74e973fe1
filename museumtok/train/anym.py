"""``museumtok train anym``: the any-M tokenizer (resampler + FSQ + nested dropout) on artwork crops.

On :class:`museumtok.train.harness.Harness`, with a wall-clock cap (``max_minutes``): the learning rate
follows a warm-up then a cosine decay over the training progress max(step/steps, elapsed/cap)
(``schedule="progress"``), so a run stopped by the cap still ends at the low learning rate. Held-out PSNR against M goes into the model card.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.catalog import load_catalog
from ..data.dataset import _preload
from ..eval.metrics import evaluate_tokenizer
from ..models.anym import AnyMAutoencoder, AnyMConfig, sample_keep
from ..paths import CHECKPOINT_DIR
from ..tokenizers.anym import AnyMTokenizer
from . import nested_config, register_trainer
from .autoencoder import batch_for_step
from .harness import Harness, save_with_card


@nested_config
@dataclass
class AnyMTrainConfig:
    model: AnyMConfig = field(default_factory=AnyMConfig)   # the any-M autoencoder: --model.dim (or --dim),
                                          # --max-tokens, --levels 8,5,5,5 …; crops are model.image_size px
    steps: int = 3000                     # optimizer steps planned (the cosine schedule's length)
    max_minutes: float = 20.0             # wall-clock cap; training stops at whichever comes first
    batch_size: int = 16                  # crops per step
    lr: float = 1e-3                      # peak AdamW learning rate
    warmup: int = 100                     # linear warm-up steps
    weight_decay: float = 1e-4            # AdamW weight decay
    log_share: float = 0.5                # share of the batch whose m is drawn log-uniform (else uniform)
    max_zoom: float = 3.0                 # random crops: short side shrunk to [S, max_zoom·S]
    seed: int = 0                         # seeds init, crops and the nested-dropout draws
    eval_M: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)   # M values in the model card
    eval_sets: tuple[str, ...] = field(default=("artworks-val", "artworks-test", "kodak"))  # held-out sets
    log_every: int = 50                   # print the loss every this many steps
    threads: int = 1                      # torch CPU threads (1 on a shared machine)
    device: str = "auto"                  # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"               # "fp32", or "bf16" autocast
    out: str | None = None                # output folder; default data/checkpoints/anym-k{K}
    init_from: str | None = None          # continue from this checkpoint folder (its training.json is carried over)


def eval_curve(tok, sets, Ms) -> list[dict]:
    rows = []
    for set_name in sets:
        for M in Ms:
            if M not in tok.supported_M:
                continue
            r = evaluate_tokenizer(tok, set_name, M)
            rows.append({k: r[k] for k in ("set", "M", "size", "images", "psnr", "ssim", "ms_ssim", "usage", "perplexity", "bpp")})
    return rows


@register_trainer("anym", AnyMTrainConfig, "any-M tokenizer: Perceiver Resampler + FSQ + nested dropout")
def train(cfg: AnyMTrainConfig, command: str = "museumtok train anym") -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = AnyMAutoencoder(cfg.model)
    before = {"steps": 0, "wall_time_s": 0.0, "runs": []}
    if cfg.init_from:
        prev = AnyMAutoencoder.from_pretrained(cfg.init_from)
        if prev.config != model.config:
            raise ValueError(f"{cfg.init_from} has config {prev.config}, not {model.config}")
        model.load_state_dict(prev.state_dict())
        info = json.loads((Path(cfg.init_from) / "training.json").read_text())
        before = {"steps": int(info.get("total_steps", info["steps"].split()[0])),
                  "wall_time_s": float(info.get("total_wall_time_s", info["wall_time_s"])),
                  "runs": info.get("runs", [info["command"]])}
    K = model.codebook_size
    name = f"anym-k{K}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    images = _preload(load_catalog(split="train", collection="artworks"), 768, verify=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    h = Harness(model, opt, steps=cfg.steps, warmup=cfg.warmup, max_minutes=cfg.max_minutes, schedule="progress",
                min_lr_ratio=0.05, clip=1.0, log_every=cfg.log_every, reduce="mean", print_logs=True,
                row_fn=lambda r: {"step": r["step"], "mse": r["mse"], "psnr": 10 * math.log10(1 / r["mse"]),
                                  "min": r["wall_s"] / 60},
                device=cfg.device, precision=cfg.precision)

    def step_fn(m, x, step):
        keep = sample_keep(x.shape[0], cfg.model.max_tokens, g, cfg.log_share).to(x.device)
        o = m(x, keep)
        return o.loss, {"mse": o.loss}

    res = h.fit(step_fn, lambda step: batch_for_step(images, step, cfg.batch_size, cfg.model.image_size,
                                                     cfg.max_zoom, cfg.seed))
    step, wall, history = res["steps"], res["wall_time_s"], h.history
    model = h.raw.cpu().eval()
    tok = AnyMTokenizer(model)
    tok.name = name
    metrics = eval_curve(tok, cfg.eval_sets, cfg.eval_M)
    total_steps, total_wall = before["steps"] + step, before["wall_time_s"] + wall
    hist = ", ".join(f"{r['step']}: {r['psnr']:.2f}" for r in history[:: max(1, len(history) // 12)])
    n_train = len(load_catalog(split="train", collection="artworks"))
    c = model.config
    save_with_card(
        tok, out, name, prior=True,
        summary=(f"Any-M tokenizer: conv encoder (f={c.f}) → Perceiver Resampler with M_max={c.max_tokens} latents "
                 f"(depth {c.enc_depth}, width {c.dim}) → FSQ levels {list(c.levels)} (K={K}) → query-grid resampler "
                 f"(depth {c.dec_depth}) reading the first M tokens → conv decoder, on {c.image_size} px working crops. "
                 "Trained with nested dropout (ordered tail-drop): the first M tokens decode the image for every "
                 f"M in 1..{c.max_tokens}. {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters."),
        data=(f"random {c.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; validation and test artworks and Kodak never seen"),
        steps=(f"{total_steps} AdamW steps of {cfg.batch_size} crops (m per image: {cfg.log_share:.0%} log-uniform, "
               f"rest uniform on 1..{c.max_tokens})"
               + (f"; {before['steps']} of them in earlier runs (their own settings: see the commands), "
                  f"then {step} continuing from them" if before["steps"] else "")),
        wall_time_s=total_wall, metrics=metrics, command=" ; ".join(before["runs"] + [command]),
        extra=("\nTraining PSNR (nested dropout, so averaged over m; step: dB): " + hist + "\n\n"
               "MS-SSIM at 64 px uses 3 scales, weights renormalised.\n\nConfig: `" + str(asdict(cfg)) + "`\n"),
    )
    info = json.loads((out / "training.json").read_text())
    info.update(total_steps=total_steps, total_wall_time_s=total_wall, runs=before["runs"] + [command])
    (out / "training.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out
