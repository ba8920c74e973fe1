"""``museumtok train anym``: the any-M tokenizer (resampler + FSQ + nested dropout) on artwork crops.

One process, a wall-clock cap (``max_minutes``): the learning rate follows a warm-up then a cosine
decay over the training progress max(step/steps, elapsed/cap), so a run stopped by the cap still ends
at the low learning rate. Held-out PSNR against M goes into the model card.
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
from ..data.dataset import _preload
from ..evaluate import evaluate_tokenizer
from ..models.anym import AnyMAutoencoder, AnyMConfig, keep_mask, sample_keep
from ..paths import CHECKPOINT_DIR
from ..tokenizers.anym import AnyMTokenizer
from . import register_trainer
from .autoencoder import batch_for_step, model_kwargs


@dataclass
class AnyMTrainConfig:
    image_size: int = 64                  # working side S (training crops are S×S)
    f: int = 8                            # encoder downsampling: (S/f)² patch features
    channels: tuple[int, ...] = (16, 32, 64)        # conv widths at full res, 1/2, …, 1/f
    num_res: int = 1                      # residual blocks per resolution
    dim: int = 96                         # resampler / token width d
    max_tokens: int = 64                  # M_max
    enc_depth: int = 2                    # encoding resampler layers
    dec_depth: int = 2                    # decoding (query-grid) resampler layers
    heads: int = 4                        # attention heads
    ff_mult: int = 2                      # FFN width multiplier
    levels: tuple[int, ...] = (8, 5, 5, 5)          # FSQ levels; K = Π L_i
    q_init_scale: float = 4.0             # resamplers' W_q init × this (sharper first attention)
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
    out: str | None = None                # output folder; default data/checkpoints/anym-k{K}
    init_from: str | None = None          # continue from this checkpoint folder (its training.json is carried over)


def lr_at_progress(p: float, step: int, lr: float, warmup: int, min_ratio: float = 0.05) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


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
    torch.set_num_threads(1)
    model = AnyMAutoencoder(AnyMConfig(**model_kwargs(cfg, AnyMConfig)))
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
    t0 = time.time()
    cap = cfg.max_minutes * 60
    history = []
    step = 0
    model.train()
    run_loss = 0.0
    while step < cfg.steps and time.time() - t0 < cap:
        p = max(step / cfg.steps, (time.time() - t0) / cap)
        for group in opt.param_groups:
            group["lr"] = lr_at_progress(p, step, cfg.lr, cfg.warmup)
        x = batch_for_step(images, step, cfg.batch_size, cfg.image_size, cfg.max_zoom, cfg.seed)
        m = sample_keep(x.shape[0], cfg.max_tokens, g, cfg.log_share)
        o = model(x, m)
        opt.zero_grad(set_to_none=True)
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += float(o.loss.detach())
        step += 1
        if step % cfg.log_every == 0:
            mse = run_loss / cfg.log_every
            history.append({"step": step, "mse": mse, "psnr": 10 * math.log10(1 / mse), "min": (time.time() - t0) / 60})
            print(json.dumps(history[-1]), flush=True)
            run_loss = 0.0
    wall = time.time() - t0
    model.eval()
    tok = AnyMTokenizer(model)
    tok.name = name
    tok.save_pretrained(out)
    metrics = eval_curve(tok, cfg.eval_sets, cfg.eval_M)
    total_steps, total_wall = before["steps"] + step, before["wall_time_s"] + wall
    hist = ", ".join(f"{h['step']}: {h['psnr']:.2f}" for h in history[:: max(1, len(history) // 12)])
    n_train = len(load_catalog(split="train", collection="artworks"))
    c = model.config
    write_model_card(
        out, name,
        summary=(f"Any-M tokenizer: conv encoder (f={c.f}) → Perceiver Resampler with M_max={c.max_tokens} latents "
                 f"(depth {c.enc_depth}, width {c.dim}) → FSQ levels {list(c.levels)} (K={K}) → query-grid resampler "
                 f"(depth {c.dec_depth}) reading the first M tokens → conv decoder, on {c.image_size} px working crops. "
                 "Trained with nested dropout (ordered tail-drop): the first M tokens decode the image for every "
                 f"M in 1..{c.max_tokens}. {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters."),
        data=(f"random {cfg.image_size} px crops (short side shrunk to [S, {cfg.max_zoom}·S], flips) of the {n_train} "
              "training-split artworks; validation and test artworks and Kodak never seen"),
        steps=(f"{total_steps} AdamW steps of {cfg.batch_size} crops (m per image: {cfg.log_share:.0%} log-uniform, "
               f"rest uniform on 1..{cfg.max_tokens})"
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
