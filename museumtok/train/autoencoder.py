"""The job shared by ``museumtok train vqvae`` and ``museumtok train dvae``, on :class:`museumtok.train.harness.Harness`.

Hugging Face Accelerate runs the same loop on a CPU, one GPU or several (``accelerate launch -m
museumtok train vqvae …``). Every step draws its batch of random crops from an RNG seeded by
(seed, step, process), so a run is reproducible and a resumed run continues exactly where it stopped:
the resume state (``<run_dir>/state/``) holds the model, the optimizer moments and torch's RNG state
as safetensors plus a JSON file, and never a pickle.

Logs in ``<run_dir>``: ``train_log.csv`` (losses and batch codebook statistics every ``log_every``
steps), ``eval_log.csv`` (held-out PSNR, usage, perplexity and dead codes every ``eval_every`` steps)
and ``log.jsonl`` (both, one JSON object a line).
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.dataset import random_crop
from ..eval.metrics import image_metrics
from ..metrics import codebook_stats
from .harness import Harness, RunLog, save_with_card


@dataclass
class AutoencoderRunConfig:
    """Optimisation, logging and checkpoint fields shared by the discrete-autoencoder trainers
    (VQ-VAE, dVAE); each trainer's config adds its model fields."""

    # optimisation
    steps: int = 4000                            # optimizer steps (the lr and any other schedules span these)
    batch_size: int = 16                         # crops per step
    crop: int = 64                               # crop side S in pixels (64 px -> 8×8 tokens at f = 8)
    max_zoom: float = 3.0                        # images are shrunk to a short side in [S, max_zoom·S] before cropping
    lr: float = 1e-3                             # Adam peak learning rate
    warmup: int = 100                            # linear warm-up steps
    clip: float = 1.0                            # gradient-norm clip (0: none)
    seed: int = 0                                # seeds the weights, the crops and any noise or restarts
    threads: int = 1                             # torch CPU threads (1 on a shared machine)
    channels_last: bool = True                   # NHWC memory layout: faster convolutions on CPU
                                                 # (benchmarks/train_speed.py measures it)
    device: str = "auto"                         # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"                      # "fp32", or "bf16" autocast (on CPU only fast with native bf16)
    max_minutes: float = 30.0                    # wall-time cap; the card records where it stopped (0: none)
    schedule: str = "steps"                      # lr schedule over "steps", or "progress" (max of the step and time
                                                 # fractions: a run stopped by max_minutes still ends at the low lr)
    data: str = "pil"                            # crops: "pil" (a PIL resize per crop, the CPU trainers' path) or
                                                 # "pool" (cut from uint8 tensors kept at a few scales: no resize per
                                                 # crop, so a GPU is not left waiting for one CPU thread)
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
    name: str | None = None                      # registry name; default <model>-f{f}-k{K}


def batch_for_step(images: Sequence[Image.Image], step: int, batch_size: int, size: int, max_zoom: float,
                   seed: int, process: int = 0) -> torch.Tensor:
    """(B, 3, S, S) random crops; a pure function of (seed, step, process), hence reproducible on resume."""
    rng = random.Random(f"{seed}-{step}-{process}")
    return torch.stack([random_crop(images[rng.randrange(len(images))], size, max_zoom, rng)
                        for _ in range(batch_size)])


class PooledCrops:
    """(B, 3, S, S) crops as :func:`batch_for_step` draws them (short side shrunk to [S, max_zoom·S], flips; a pure
    function of (seed, step, process), so resume-safe), but cut from uint8 tensors kept at ``levels`` short sides
    spaced log-uniformly in [S, max_zoom·S] instead of resizing a PIL image for every crop."""

    def __init__(self, images: Sequence[Image.Image], size: int, max_zoom: float, levels: int = 4):
        self.size = size
        sides = sorted({round(size * max_zoom ** (i / max(1, levels - 1))) for i in range(levels)})
        self.pyramid: list[list[torch.Tensor]] = []              # per image: (3, h, w) uint8 at each side
        for img in images:
            w, h = img.size
            s = min(w, h)
            level = []
            for t in sides:
                if t > s and level:
                    break
                r = min(t, s) / s
                nw, nh = max(size, round(w * r)), max(size, round(h * r))
                im = img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.Resampling.LANCZOS)
                level.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
            self.pyramid.append(level)

    def __call__(self, step: int, batch_size: int, seed: int, process: int = 0) -> torch.Tensor:
        rng = random.Random(f"pool-{seed}-{step}-{process}")
        out = []
        for _ in range(batch_size):
            level = self.pyramid[rng.randrange(len(self.pyramid))]
            t = level[rng.randrange(len(level))]
            _, h, w = t.shape
            top, left = rng.randint(0, h - self.size), rng.randint(0, w - self.size)
            c = t[:, top : top + self.size, left : left + self.size]
            out.append(c.flip(-1) if rng.random() < 0.5 else c)
        return torch.stack(out).float().div_(255.0)             # (B, 3, S, S)


@torch.no_grad()
def held_out_eval(model, x_val: torch.Tensor, K: int, batch_size: int = 16) -> dict:
    """PSNR and codebook usage / perplexity / dead codes of ``model`` on a fixed held-out batch."""
    was = model.training
    model.eval()
    psnrs, idx = [], []
    dev = next(model.parameters()).device
    for s in range(0, len(x_val), batch_size):
        xb = x_val[s : s + batch_size]
        k = model.encode_indices(xb.to(dev))
        x_hat = model.decode_indices(k).cpu()
        k = k.cpu()
        psnrs.append(image_metrics(xb, x_hat, with_lpips=False)["psnr"])
        idx.append(k.reshape(-1))
    model.train(was)
    st = codebook_stats(torch.cat(idx), K)
    return {"psnr": float(torch.cat(psnrs).mean()), "usage": st.usage, "perplexity": st.perplexity,
            "dead_codes": st.dead}


def fit(
    model: torch.nn.Module,
    cfg: Any,
    images: Sequence[Image.Image],
    run_dir: Path,
    x_val: torch.Tensor | None = None,
    on_step: Callable[[torch.nn.Module, int], dict] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    loss_fn: Callable[[torch.Tensor, Any, torch.nn.Module], tuple[torch.Tensor, dict]] | None = None,
) -> dict:
    """Train ``model`` for ``cfg.steps`` steps (or until ``cfg.max_minutes``) on :class:`Harness`; returns a summary.

    ``cfg`` is an :class:`AutoencoderRunConfig`. ``on_step(model, step)`` may change the model before
    each step (the dVAE's τ schedule) and returns extra values to log. ``stop_after`` interrupts
    the run at that step as a crash would (after saving state), without changing the schedule.
    ``loss_fn(x, out, model)`` replaces the model's own loss (``out.loss``) by another objective and returns
    (loss, values to log): the VQ-VAE trainer's §7.2 multi-term objective.
    """
    torch.manual_seed(cfg.seed)
    h = Harness(model, torch.optim.Adam(model.parameters(), lr=cfg.lr), steps=cfg.steps, warmup=cfg.warmup,
                max_minutes=cfg.max_minutes, schedule=getattr(cfg, "schedule", "steps"), clip=cfg.clip, run_dir=run_dir, resume=cfg.resume,
                save_every=cfg.save_every, log_every=cfg.log_every, eval_every=cfg.eval_every,
                evaluate=(lambda m: held_out_eval(m, x_val, m.codebook_size)) if x_val is not None else None,
                device=getattr(cfg, "device", "auto"), precision=getattr(cfg, "precision", "fp32"),
                channels_last=getattr(cfg, "channels_last", False), stop_after=stop_after, progress=progress,
                desc=Path(run_dir).name)
    process = h.accelerator.process_index

    def step_fn(m, x, step):
        extra = on_step(h.raw, step) if on_step else {}
        out = m(x)
        if loss_fn is not None:
            loss, logs = loss_fn(x, out, h.raw)
            return loss, {"loss": loss, **out.losses, **logs, **out.quant.stats, **extra}
        return out.loss, {"loss": out.loss, **out.losses, **out.quant.stats, **extra}

    data = getattr(cfg, "data", "pil")
    if data not in ("pil", "pool"):
        raise ValueError(f"data must be 'pil' or 'pool', got {data!r}")
    if data == "pool":
        pool = PooledCrops(images, cfg.crop, cfg.max_zoom)
        res = h.fit(step_fn, lambda step: pool(step, cfg.batch_size, cfg.seed, process))
    else:
        res = h.fit(step_fn, lambda step: batch_for_step(images, step, cfg.batch_size, cfg.crop, cfg.max_zoom,
                                                         cfg.seed, process))
    return res


# ---- the whole job: data, fit, final evaluation, checkpoint and model card ----------------------
def train_images(max_side: int = 768):
    """The training-split artworks, shrunk so the short side is at most ``max_side`` (kept in memory)."""
    from ..data.catalog import load_catalog
    from ..data.dataset import _preload

    entries = load_catalog(split="train", collection="artworks")
    return _preload(entries, max_side, verify=False), len(entries)


def final_metrics(tok, sets: Sequence[str]) -> list[dict]:
    from ..eval.metrics import evaluate_tokenizer

    rows = []
    for set_name in sets:
        for M in tok.supported_M:
            r = evaluate_tokenizer(tok, set_name, M)
            rows.append({"set": r["set"], "M": r["M"], "size": r["size"], "images": r["images"],
                         "psnr": r["psnr"], "ssim": r["ssim"], "ms_ssim": r["ms_ssim"],
                         "lpips": r["lpips"] if r["lpips"] is not None else "n/a",
                         "usage": r["usage"], "perplexity": r["perplexity"],
                         "dead_codes": round(tok.K * (1 - r["usage"])), "bpp": r["bpp"]})
    return rows


def run_job(cfg, name: str, model: torch.nn.Module, tokenizer_cls, command: str, summary: str,
            on_step=None, loss_fn=None) -> Path:
    """Train ``model`` on the training artworks, evaluate, save checkpoint + model card; returns the folder."""
    from ..data.dataset import eval_batch
    from ..paths import CHECKPOINT_DIR, cache_dir

    torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else cache_dir("runs", name)
    images, n_train = train_images()
    x_val, _ = eval_batch(cfg.eval_set, cfg.eval_size)
    res = fit(model, cfg, images, run_dir, x_val=x_val, on_step=on_step, loss_fn=loss_fn)
    model = model.eval()
    tok = tokenizer_cls(model)
    tok.name = name
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    metrics = final_metrics(tok, cfg.final_eval_sets)
    evals = RunLog(run_dir).rows("eval")
    curve = ", ".join(f"{int(r['step'])}: {float(r['psnr']):.2f} dB / ppl {float(r['perplexity']):.0f}"
                      for r in evals[:: max(1, len(evals) // 8)] + ([] if (len(evals) - 1) % max(1, len(evals) // 8) == 0 else evals[-1:]))
    n_params = sum(p.numel() for p in model.parameters())
    save_with_card(
        tok, out, name, prior=True, summary=summary,
        data=(f"random {cfg.crop}×{cfg.crop} crops (rescaled so the short side is 1–{cfg.max_zoom:g}× the crop"
              f"{', cut from 4 copies kept at log-spaced sizes' if getattr(cfg, 'data', 'pil') == 'pool' else ''}, "
              f"flipped) of the {n_train} training-split artworks; validation = {cfg.eval_set} at "
              f"{cfg.eval_size} px; Kodak and artworks-test never seen in training"),
        steps=(f"{res['steps']} steps of batch {cfg.batch_size} (Adam, lr {cfg.lr:g}, warm-up {cfg.warmup}, cosine "
               f"decay; stopped by {res['stopped_by']})"),
        wall_time_s=res["wall_time_s"], metrics=metrics, command=command,
        extra=(f"\n{n_params / 1e6:.2f} M parameters. Held-out {cfg.eval_set} during training (step: PSNR at "
               f"{cfg.eval_size} px / perplexity): {curve}. Full log: `eval_log.csv`.\n\n"
               "MS-SSIM at 64 and 128 px uses 3 and 4 scales (the 5 standard scales need ≥161 px), weights "
               "renormalised. LPIPS is n/a where the AlexNet backbone weights are not cached.\n\n"
               f"Config: `{asdict(cfg)}`\n"),
    )
    shutil.copy(run_dir / "eval_log.csv", out / "eval_log.csv")
    print(json.dumps({"checkpoint": str(out), **res}, indent=1))
    return out
