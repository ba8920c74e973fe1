"""The training loop shared by ``museumtok train vqvae`` and ``museumtok train dvae``.

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

import csv
from dataclasses import dataclass, field
import json
import math
import random
import shutil
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data.dataset import random_crop
from ..evaluate import image_metrics
from ..metrics import codebook_stats

STATE_DIR = "state"


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
    max_minutes: float = 30.0                    # wall-time cap; the card records where it stopped (0: none)
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


def model_kwargs(cfg, model_config_cls) -> dict:
    """The fields of the training config that the model's config dataclass also has."""
    names = {f.name for f in fields(model_config_cls)}
    return {k: v for k, v in asdict(cfg).items() if k in names}


def batch_for_step(images: Sequence[Image.Image], step: int, batch_size: int, size: int, max_zoom: float,
                   seed: int, process: int = 0) -> torch.Tensor:
    """(B, 3, S, S) random crops; a pure function of (seed, step, process), hence reproducible on resume."""
    rng = random.Random(f"{seed}-{step}-{process}")
    return torch.stack([random_crop(images[rng.randrange(len(images))], size, max_zoom, rng)
                        for _ in range(batch_size)])


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio``·lr at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ---- resume state: safetensors + JSON ------------------------------------------------------------
def save_state(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict) -> None:
    """Write model, optimizer and RNG state atomically (a temp folder renamed over the old one)."""
    tmp = run_dir / (STATE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    tensors["__torch_rng__"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    meta = {"param_groups": sd["param_groups"], "scalars": scalars, **info}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    final = run_dir / STATE_DIR
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def load_state(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_state` wrote; returns its JSON info (step, wall time, …)."""
    d = run_dir / STATE_DIR
    model.load_state_dict(load_file(d / "model.safetensors"))
    meta = json.loads((d / "state.json").read_text())
    tensors = load_file(d / "optimizer.safetensors")
    torch.set_rng_state(tensors.pop("__torch_rng__"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


# ---- logs ----------------------------------------------------------------------------------------
class RunLog:
    """Appends rows to ``train_log.csv`` / ``eval_log.csv`` and every row to ``log.jsonl``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, row: dict) -> None:
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        path = self.run_dir / f"{kind}_log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps({"kind": kind, **row}) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the saved step (they will be logged again)."""
        for kind in ("train", "eval"):
            path = self.run_dir / f"{kind}_log.csv"
            if path.exists():
                rows = list(csv.DictReader(open(path)))
                keep = [r for r in rows if int(r["step"]) <= step]
                with open(path, "w", newline="") as fh:
                    if rows:
                        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                        w.writeheader()
                        w.writerows(keep)
        p = self.run_dir / "log.jsonl"
        if p.exists():
            lines = [ln for ln in p.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            p.write_text("".join(ln + "\n" for ln in lines))

    def rows(self, kind: str) -> list[dict]:
        path = self.run_dir / f"{kind}_log.csv"
        return list(csv.DictReader(open(path))) if path.exists() else []


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
) -> dict:
    """Train ``model`` for ``cfg.steps`` steps (or until ``cfg.max_minutes``); returns a summary.

    ``cfg`` needs: steps, batch_size, crop, max_zoom, lr, warmup, seed, log_every, eval_every,
    save_every, max_minutes, resume, clip. ``on_step(model, step)`` may change the model before
    each step (the dVAE's τ schedule) and returns extra values to log. ``stop_after`` interrupts
    the run at that step as a crash would (after saving state), without changing the schedule.
    """
    from accelerate import Accelerator

    run_dir = Path(run_dir)
    log = RunLog(run_dir)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, wall_before = 0, 0.0
    if cfg.resume and (run_dir / STATE_DIR / "state.json").exists():
        meta = load_state(run_dir, model, opt)
        start, wall_before = int(meta["step"]), float(meta["wall_time_s"])
        log.truncate_after(start)
        print(f"resumed from {run_dir / STATE_DIR} at step {start}")
    else:
        for p in run_dir.glob("*_log.csv"):
            p.unlink()
        (run_dir / "log.jsonl").unlink(missing_ok=True)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    K = raw.codebook_size
    t0 = time.time()
    step = start
    stopped_by = "steps"
    bar = tqdm(total=cfg.steps, initial=start, desc=run_dir.name, disable=not progress or not accelerator.is_main_process,
               mininterval=10)
    model.train()
    while step < cfg.steps:
        if cfg.max_minutes and wall_before + time.time() - t0 > 60 * cfg.max_minutes:
            stopped_by = "wall time"
            break
        if stop_after is not None and step >= stop_after:
            stopped_by = "stop_after"
            break
        extra = on_step(raw, step) if on_step else {}
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch_for_step(images, step, cfg.batch_size, cfg.crop, cfg.max_zoom, cfg.seed,
                           accelerator.process_index).to(accelerator.device)
        out = model(x)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(out.loss)
        if cfg.clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "wall_s": wall_before + time.time() - t0, "lr": lr, "loss": float(out.loss.detach()),
                   **{k: float(v.detach()) for k, v in out.losses.items()},
                   **{k: float(v) for k, v in out.quant.stats.items()}, **extra}
            log.write("train", row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", ppl=f"{row.get('perplexity', 0):.0f}")
        if x_val is not None and (step % cfg.eval_every == 0 or step == cfg.steps) and accelerator.is_main_process:
            log.write("eval", {"step": step, "wall_s": wall_before + time.time() - t0, **held_out_eval(raw, x_val, K)})
        if step % cfg.save_every == 0 and accelerator.is_main_process:
            save_state(run_dir, raw, opt, {"step": step, "wall_time_s": wall_before + time.time() - t0})
    bar.close()
    wall = wall_before + time.time() - t0
    if accelerator.is_main_process:
        save_state(run_dir, raw, opt, {"step": step, "wall_time_s": wall})
        evaluated = log.rows("eval") and int(log.rows("eval")[-1]["step"]) == step
        if x_val is not None and not evaluated and stopped_by != "stop_after":  # an interruption logs nothing extra
            log.write("eval", {"step": step, "wall_s": wall, **held_out_eval(raw, x_val, K)})
    model.eval()
    return {"steps": step, "wall_time_s": wall, "stopped_by": stopped_by, "resumed_from": start}


# ---- the whole job: data, fit, final evaluation, checkpoint and model card ----------------------
def train_images(max_side: int = 768):
    """The training-split artworks, shrunk so the short side is at most ``max_side`` (kept in memory)."""
    from ..data.catalog import load_catalog
    from ..data.dataset import _preload

    entries = load_catalog(split="train", collection="artworks")
    return _preload(entries, max_side, verify=False), len(entries)


def final_metrics(tok, sets: Sequence[str]) -> list[dict]:
    from ..evaluate import evaluate_tokenizer

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
            on_step=None) -> Path:
    """Train ``model`` on the training artworks, evaluate, save checkpoint + model card; returns the folder."""
    from ..cards import write_model_card
    from ..data.dataset import eval_batch
    from ..paths import CHECKPOINT_DIR, cache_dir

    torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else cache_dir("runs", name)
    images, n_train = train_images()
    x_val, _ = eval_batch(cfg.eval_set, cfg.eval_size)
    res = fit(model, cfg, images, run_dir, x_val=x_val, on_step=on_step)
    model = model.eval()
    tok = tokenizer_cls(model)
    tok.name = name
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    tok.save_pretrained(out)
    shutil.copy(run_dir / "eval_log.csv", out / "eval_log.csv")
    metrics = final_metrics(tok, cfg.final_eval_sets)
    evals = RunLog(run_dir).rows("eval")
    curve = ", ".join(f"{int(r['step'])}: {float(r['psnr']):.2f} dB / ppl {float(r['perplexity']):.0f}"
                      for r in evals[:: max(1, len(evals) // 8)] + ([] if (len(evals) - 1) % max(1, len(evals) // 8) == 0 else evals[-1:]))
    n_params = sum(p.numel() for p in model.parameters())
    write_model_card(
        out, name, summary=summary,
        data=(f"random {cfg.crop}×{cfg.crop} crops (rescaled so the short side is 1–{cfg.max_zoom:g}× the crop, "
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
    print(json.dumps({"checkpoint": str(out), **res}, indent=1))
    return out
