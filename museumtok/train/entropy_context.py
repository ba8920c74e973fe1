"""``museumtok train entropy-context``: a context model (transformer or mask-A) on the frozen ``hyperprior-q3`` (§5.3).

Only the context model learns; g_a, h_a, h_s, g_s and the ẑ density are the bundled hyperprior's,
frozen, so ŷ and ẑ are the same as the hyperprior's and the comparison is purely about the entropy
model. Loss: R_y = −Σ log2 P(ỹ | μ, σ) per pixel, with ỹ = y + U(−½, ½) as the context's input and as
the coded value (Ballé et al. 2018); the bits of ẑ are constant and left out.

Equal training time. The latents of a fixed bank of random crops (same seed: the same crops for both
models) are computed once and cached, then each model trains for the same **CPU time** of its one
thread (``max_minutes``, measured with ``time.process_time``: on a shared machine wall time depends on
the neighbours), capped by ``max_wall_minutes``. Afterwards every held-out image is really compressed
and decompressed (sequentially, in raster order) and the bytes counted.

    museumtok train entropy-context --context mask-a --max-minutes 6 --results docs/s53/results.json
    museumtok train entropy-context --context transformer --max-minutes 6 --results docs/s53/results.json

``--results`` merges the run's numbers (bytes per image, training curve, steps, CPU and wall time,
the command) into that JSON, which notebook 05_3 reads; the checkpoint goes to ``--out`` (default: the
cache, ``~/.cache/museumtok/runs/<name>``), not to ``data/checkpoints``.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import register_trainer
from .harness import Harness


@dataclass
class EntropyContextConfig:
    context: str = "transformer"       # "transformer" (Entroformer-style) or "mask-a" (Minnen et al. 2018)
    init: str = "hyperprior-q3"        # frozen hyperprior under data/checkpoints (or a folder)
    crop: int = 256                    # crop side in px (a multiple of 64): latents of 16×16 positions
    bank: int = 768                    # crops in the latent bank (computed once, cached, shared by both models)
    scales: tuple[int, ...] = (256, 384, 512, 768)  # short sides the training artworks are kept at
    batch: int = 8                     # crops per step
    lr: float = 1e-3                   # Adam learning rate (linear warm-up, cosine to lr/20 over the budget)
    warmup_steps: int = 50             # linear warm-up steps
    max_minutes: float = 4.0           # training budget in CPU minutes of this process (the equal-time unit)
    max_wall_minutes: float = 10.0     # hard cap in wall minutes
    max_steps: int = 1_000_000         # or stop after this many steps
    log_every: int = 25                # held-out (artworks-val) bits every this many steps
    d_model: int = 128                 # transformer width
    heads: int = 8                     # transformer heads
    layers: int = 2                    # transformer blocks
    mlp_ratio: int = 2                 # transformer MLP width / d_model
    radius: int = 4                    # diamond relative-position radius
    seed: int = 0                      # bank crops, batch order, noise
    eval_set: str = "kodak"            # held-out set coded for real at the end
    eval_limit: int | None = None      # its first images only (None: all)
    threads: int = 1                   # torch threads
    device: str = "cpu"                # "cpu" (the budget is this process's CPU time), "auto" or "cuda"
    name: str | None = None            # key in the results JSON and run name (default: the context)
    out: str | None = None             # checkpoint folder (default ~/.cache/museumtok/runs/<name>-on-<init>)
    results: str | None = None         # JSON file the measured numbers are merged into (e.g. docs/s53/results.json)


def _hyperprior(init: str):
    from ..codecs.learned import ScaleHyperprior
    from ..paths import CHECKPOINT_DIR

    path = Path(init) if Path(init).is_dir() else CHECKPOINT_DIR / init
    return ScaleHyperprior.from_pretrained(str(path)).eval(), path


def _stamp(path: Path) -> str:
    from ..fingerprint import folder_fingerprint

    return folder_fingerprint(path)[:16]


@torch.no_grad()
def latent_bank(hp, crops: torch.Tensor, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (n, 3, S, S) -> y (n, M, S/16, S/16) and ẑ (n, N, S/64, S/64) of the frozen hyperprior."""
    ys, zs = [], []
    for i in range(0, len(crops), chunk):
        y = hp.g_a(crops[i : i + chunk])
        ys.append(y)
        zs.append(torch.round(hp.h_a(torch.abs(y))))
    return torch.cat(ys), torch.cat(zs)


def training_bank(cfg: EntropyContextConfig, hp, path: Path) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The cached latent bank of ``cfg.bank`` random crops (the same for every run with this seed): y, ẑ, CPU s."""
    from ..paths import cache_dir
    from .neural_codecs import CropSampler

    f = cache_dir("entropy53") / f"bank-{path.name}-{_stamp(path)}-c{cfg.crop}-n{cfg.bank}-s{cfg.seed}.pt"
    if f.exists():
        d = torch.load(f)
        return d["y"], d["z_hat"], d["cpu_s"]
    t0 = time.process_time()
    sampler = CropSampler(cfg.crop, cfg.scales, cfg.seed)
    ys, zs = [], []
    for i in range(0, cfg.bank, 32):
        y, z = latent_bank(hp, sampler.batch(min(32, cfg.bank - i)))
        ys.append(y)
        zs.append(z)
    y, z = torch.cat(ys), torch.cat(zs)
    cpu = time.process_time() - t0
    torch.save({"y": y, "z_hat": z, "cpu_s": cpu}, f)
    return y, z, cpu


def build(cfg: EntropyContextConfig):
    from ..codecs.learned.entroformer import ContextualHyperprior

    hp, path = _hyperprior(cfg.init)
    kw = dict(context=cfg.context)
    if cfg.context == "transformer":
        kw.update(d_model=cfg.d_model, heads=cfg.heads, layers=cfg.layers, mlp_ratio=cfg.mlp_ratio, radius=cfg.radius)
    net = ContextualHyperprior.from_hyperprior(hp, **kw)
    for m in net.hyperprior_modules():
        m.requires_grad_(False)
    return net, hp, path


def bits_per_pixel(net, y: torch.Tensor, z_hat: torch.Tensor, crop: int, training: bool) -> torch.Tensor:
    """R_y in bits per pixel of a latent batch (−log2 of the likelihoods, summed, over B·S²)."""
    lik = net.latent_likelihoods(y, z_hat, training=training)
    return -torch.log2(lik).sum() / (y.shape[0] * crop * crop)


def fit_context(net, y_bank: torch.Tensor, z_bank: torch.Tensor, cfg: EntropyContextConfig,
                val: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train ``net.context`` on the bank for ``cfg.max_minutes`` CPU minutes (:class:`Harness`, ``clock="cpu"``);
    returns steps, times, why it stopped and the curve (a point at the start, every ``log_every`` steps, at the end)."""
    rng = random.Random(cfg.seed)
    opt = torch.optim.Adam(net.context.parameters(), lr=cfg.lr)
    curve: list[dict] = []

    def point(step: int, cpu_s: float, wall_s: float, ema: float | None) -> dict:
        row = {"step": step, "cpu_min": round(cpu_s / 60, 3), "wall_min": round(wall_s / 60, 3), "train_bpp_ema": ema}
        if val is not None:
            net.eval()
            with torch.no_grad():
                row["val_bpp_y"] = float(bits_per_pixel(net, *(v.to(h.device) for v in val), cfg.crop, training=False))
            net.train()
        curve.append(row)
        return row

    h = Harness(net, opt, steps=cfg.max_steps, warmup=cfg.warmup_steps, max_minutes=cfg.max_minutes, clock="cpu",
                max_wall_minutes=cfg.max_wall_minutes, schedule="time", min_lr_ratio=0.05, clip=1.0,
                log_every=cfg.log_every, reduce=0.95, device=cfg.device,
                row_fn=lambda r: point(r["step"], r["cpu_s"], r["wall_s"], r["bpp"]))

    def batch(step):
        idx = torch.tensor([rng.randrange(len(y_bank)) for _ in range(cfg.batch)])
        return y_bank[idx], z_bank[idx]

    def step_fn(m, yz, step):
        bpp = bits_per_pixel(m, *yz, cfg.crop, training=True)
        return bpp, {"bpp": bpp}

    net.train()
    point(0, 0.0, 0.0, None)
    res = h.fit(step_fn, batch)
    net.train()
    point(res["steps"], res["cpu_time_s"], res["wall_time_s"], h.reduced.get("bpp"))
    net.eval()
    return {"steps": res["steps"], "cpu_s": res["cpu_time_s"], "wall_s": res["wall_time_s"],
            "stopped_by": res["stopped_by"], "curve": curve}


def code_images(codec, images, verify=None) -> list[dict]:
    """Compress + decompress each (id, (3, H, W)) for real: bytes, bpp, PSNR, ms per image.

    ``verify(x) -> x̂`` (optional): the decoded image must equal it (e.g. the hyperprior's own
    decoding, when only the entropy model differs)."""
    from ..metrics import psnr

    rows = []
    for img_id, x in images:
        t0 = time.perf_counter()
        enc = codec.compress(x)
        t1 = time.perf_counter()
        x_hat = codec.decompress(enc)
        t2 = time.perf_counter()
        rows.append({"image": img_id, "bytes": len(enc.data), "bpp": 8 * len(enc.data) / (x.shape[-2] * x.shape[-1]),
                     "psnr": float(psnr(x, x_hat)[0]), "encode_ms": 1e3 * (t1 - t0), "decode_ms": 1e3 * (t2 - t1)})
        if verify is not None:
            rows[-1]["max_abs_diff_to_reference"] = float((x_hat - verify(x)).abs().max())
    return rows


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _round(o, nd=5):
    if isinstance(o, float):
        return round(o, nd)
    if isinstance(o, dict):
        return {k: _round(v, nd) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_round(v, nd) for v in o]
    return o


def merge_results(path: str | Path, section: str, key: str, value: dict) -> Path:
    """Write ``value`` under ``[section][key]`` of a JSON file, keeping everything else in it."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(section, {})[key] = _round(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@register_trainer("entropy-context", EntropyContextConfig,
                  "context model (transformer or mask-A) on the frozen hyperprior-q3, real bytes (§5.3)")
def train(cfg: EntropyContextConfig, command: str = "museumtok train entropy-context") -> Path:
    from ..cards import hardware
    from ..data.dataset import eval_batch
    from ..paths import cache_dir
    from ..eval.rd import rd_images

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {cfg.crop}")
    net, hp, path = build(cfg)
    y_bank, z_bank, bank_cpu = training_bank(cfg, hp, path)
    val = latent_bank(hp, eval_batch("artworks-val", cfg.crop)[0])
    res = fit_context(net, y_bank, z_bank, cfg, val)
    key = cfg.name or cfg.context
    name = f"{key}-on-{path.name}"
    out = Path(cfg.out) if cfg.out else cache_dir("runs", name)
    net.name = name
    net.save_pretrained(out)

    images = rd_images(cfg.eval_set, cfg.eval_limit)
    rows = code_images(net, images)
    summary = {"context": cfg.context, "init": cfg.init, "params": sum(p.numel() for p in net.context.parameters()),
               "set": cfg.eval_set, **summarise(rows), **{k: v for k, v in res.items() if k != "curve"},
               "bank": {"crops": len(y_bank), "crop": cfg.crop, "cpu_s_to_build": bank_cpu},
               "curve": res["curve"], "images": rows, "command": command, "hardware": hardware(),
               "checkpoint": str(out), "config": asdict(cfg)}
    print(json.dumps({k: v for k, v in summary.items() if k not in ("curve", "images", "config")}, indent=1))
    if cfg.results:
        ref_rows = code_images(hp, images)
        merge_results(cfg.results, "entropy_context", path.name,
                      {"context": "none (the hyperprior's σ only)", "set": cfg.eval_set, **summarise(ref_rows),
                       "images": ref_rows})
        merge_results(cfg.results, "entropy_context", key, summary)
    return out
