"""``museumtok train hyperprior|factorized --lmbda 0.0067``: the learned codecs of §5 on the training artworks.

Loss (§3.2): L = R + λ·255²·D, with R = −Σ log2 P(ỹ) (+ the hyper-latent's) in bits per pixel and
D the MSE on [0, 1] pixels; quantization is replaced by additive uniform noise while training.
Random 128 px crops (random scale, flip) of the training-split artworks, one torch thread.
A run can start from another checkpoint (``--init``), which is how the λ ladder is trained on CPU:
one base model, then short fine-tunes to the other λ, then further runs that continue each one.
The card and ``training.json`` carry the whole chain of runs (``lineage``) and its total steps and time.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from ..data.catalog import load_catalog
from ..data.dataset import _preload
from ..data.images import pil_to_tensor
from ..paths import CHECKPOINT_DIR
from . import register_trainer
from .harness import Harness, save_with_card


@dataclass
class NeuralCodecConfig:
    quality: int = 3                 # CompressAI quality index 1..8; sets λ unless --lmbda is given
    lmbda: float | None = None       # λ of R + λ·255²·MSE; default QUALITY_LAMBDAS[quality]
    N: int = 64                      # hidden / hyper-latent channels
    M: int = 96                      # latent channels
    crop: int = 128                  # training crop side (px); a multiple of 64
    batch: int = 8                   # crops per step
    lr: float = 1e-3                 # Adam learning rate (cosine-decayed to lr/20)
    warmup_steps: int = 100          # linear lr warm-up: Adam's first steps are ±lr on every weight (sign steps),
                                     # which at lr 1e-3 take hyperprior-q3 from 24.6 to 14.7 dB (kodim01) in 2 steps
    max_steps: int = 100_000         # stop after this many steps ...
    max_minutes: float = 12.0        # ... or this many minutes of wall time, whichever first
    scales: tuple[int, ...] = (256, 384, 512, 768)  # short sides the artworks are kept at, crops cut from these
    init: str | None = None          # checkpoint folder to start from (g_a/g_s etc. copied where shapes match)
    seed: int = 0                    # seeds crops, noise and initialisation
    eval_set: str = "kodak"          # held-out set for the model card (real bitstreams)
    eval_limit: int | None = None    # images of the held-out set (None: all; 0: none, the card is measured later)
    out: str | None = None           # output folder; default data/checkpoints/<model>-q<quality>
    threads: int = 1                 # torch threads (1 on the shared 2-core machine)
    density_lr_mult: float = 10.0    # learning-rate multiplier for the factorized densities (few, slow-moving parameters)
    bf16: bool | None = None         # bfloat16 autocast for the transforms; entropy models stay float32. None: only where
                                     # oneDNN has native bf16 (AVX512-BF16/AMX: ~2× faster); emulated on AVX2 it is ~10× slower
    channels_last: bool = True       # NHWC memory layout (oneDNN: ~1.5× faster on CPU)
    device: str = "auto"             # "auto" (a GPU when there is one), "cpu" or "cuda"
    decoder_input: str = "ste"       # hyperprior: in training g_s reads round(y) ("ste") or the noisy ỹ ("noise", as CompressAI)
    compile: bool = False            # torch.compile the network for training (~1 min to compile, counted in the CPU
                                     # clock); benchmarks/train_speed.py: 1.1–1.3× per step in fp32, no reliable gain on top of
                                     # bf16 autocast (this machine's default), so off by default
    clock: str = "wall"              # what max_minutes counts: "wall" time or this process's "cpu" time (fair
                                     # equal-time comparisons of two runs sharing one machine)


class CropSampler:
    """Random crop×crop crops from artworks kept as uint8 tensors at a few scales (no resizing per step)."""

    def __init__(self, crop: int, scales: tuple[int, ...], seed: int):
        self.crop = crop
        self.rng = random.Random(seed)
        self.images: list[torch.Tensor] = []
        for img in _preload(load_catalog(split="train", collection="artworks"), max(scales), verify=False):
            w, h = img.size
            for s in scales:
                r = s / min(w, h)
                if r > 1:
                    continue
                im = img.resize((max(crop, round(w * r)), max(crop, round(h * r))), Image.Resampling.LANCZOS)
                self.images.append((pil_to_tensor(im) * 255).round().to(torch.uint8))

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            t = self.images[self.rng.randrange(len(self.images))]
            _, h, w = t.shape
            top, left = self.rng.randint(0, h - self.crop), self.rng.randint(0, w - self.crop)
            c = t[:, top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(-1)
            out.append(c)
        return torch.stack(out).float() / 255                   # (B, 3, crop, crop)


def use_bf16(flag: bool | None) -> bool:
    """Resolve ``NeuralCodecConfig.bf16``: None means bf16 only where the CPU computes it natively."""
    if flag is not None:
        return bool(flag)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_lineage(ckpt: str | Path) -> list[dict]:
    """The runs that produced a checkpoint, oldest first: ``{"checkpoint", "command", "steps", "wall_time_s"}``.

    Read from its ``training.json``: the stored ``lineage`` if there is one, else rebuilt from the
    ``steps`` text ("initialised from `X` …, then N Adam steps") by following the init chain.
    """
    path = Path(ckpt) / "training.json"
    if not path.exists():
        return [{"checkpoint": str(ckpt), "command": None, "steps": None, "wall_time_s": None}]
    facts = json.loads(path.read_text())
    if "lineage" in facts:
        return facts["lineage"]
    m = re.search(r"(\d+) Adam steps", facts.get("steps", ""))
    own = {"checkpoint": facts.get("name", str(ckpt)), "command": facts.get("command"),
           "steps": int(m.group(1)) if m else None, "wall_time_s": facts.get("wall_time_s"),
           "hardware": facts.get("hardware")}
    init = re.search(r"initialised from `([^`]+)`", facts.get("steps", ""))
    if init and Path(init.group(1)).resolve() != Path(ckpt).resolve():
        return training_lineage(init.group(1)) + [own]
    return [own]


def rd_loss(out: dict, x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """L = R + λ·255²·MSE, with R in bits per pixel (§3.2)."""
    B, _, H, W = x.shape
    bits = sum(-torch.log2(p).sum() for p in out["likelihoods"].values())
    bpp = bits / (B * H * W)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return {"loss": bpp + lmbda * 255**2 * mse, "bpp": bpp, "mse": mse,
            "psnr": -10 * torch.log10(mse.detach().clamp_min(1e-10))}


def build(model: str, cfg: NeuralCodecConfig, lmbda: float):
    """The network to train: ours, or (``compressai-hyperprior``) CompressAI's own ScaleHyperprior class."""
    if model == "compressai-hyperprior":
        from compressai.models import ScaleHyperprior as CompressAIScaleHyperprior

        return CompressAIScaleHyperprior(cfg.N, cfg.M)
    from ..codecs.learned import ContextHyperprior, FactorizedPrior, ScaleHyperprior

    cls = {"hyperprior": ScaleHyperprior, "factorized": FactorizedPrior, "context": ContextHyperprior}[model]
    if model == "hyperprior":
        return cls(N=cfg.N, M=cfg.M, lmbda=lmbda, decoder_input=cfg.decoder_input)
    return cls(N=cfg.N, M=cfg.M, lmbda=lmbda)


def load_matching(net: torch.nn.Module, path: str) -> list[str]:
    """Copy every tensor of a checkpoint whose name and shape match; return the names copied."""
    from safetensors.torch import load_file

    src = load_file(str(Path(path) / "model.safetensors"))
    own = net.state_dict()
    take = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape and not k.split(".")[-1].startswith("_")}
    net.load_state_dict(take, strict=False)
    return sorted(take)


def train_codec(model: str, cfg: NeuralCodecConfig, command: str) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    from ..codecs.learned.base import QUALITY_LAMBDAS

    lmbda = cfg.lmbda if cfg.lmbda is not None else QUALITY_LAMBDAS[cfg.quality]
    name = f"{model}-q{cfg.quality}" if cfg.lmbda is None else f"{model}-l{lmbda:g}"
    out_dir = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    if cfg.crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {cfg.crop}")
    net = build(model, cfg, lmbda)
    copied = load_matching(net, cfg.init) if cfg.init else []
    sampler = CropSampler(cfg.crop, cfg.scales, cfg.seed)
    bf16 = use_bf16(cfg.bf16)
    lineage = training_lineage(cfg.init) if cfg.init else []
    compressai = model.startswith("compressai-")
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]   # CompressAI's: fitted by aux_loss
    density = [p for n, p in net.named_parameters() if n.startswith("entropy_bottleneck.") and not n.endswith(".quantiles")]
    ids = {id(p) for p in density + aux}
    rest = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": rest, "base_lr": cfg.lr},
                            {"params": density, "base_lr": cfg.lr * cfg.density_lr_mult}], lr=cfg.lr)
    opts = {"main": opt, "aux": torch.optim.Adam(aux, lr=1e-3)} if aux else opt   # CompressAI's recipe: aux lr 1e-3
    h = Harness(net, opts, steps=cfg.max_steps, warmup=cfg.warmup_steps, max_minutes=cfg.max_minutes, clock=cfg.clock,
                schedule="progress", min_lr_ratio=0.05, clip=1.0, log_every=50, reduce=0.98, print_logs=True,
                row_fn=lambda r: {"step": r["step"], "min": round(r["wall_s"] / 60, 2),
                                  **{k: round(r[k], 4) for k in ("loss", "bpp", "mse", "psnr")}},
                device=cfg.device, precision="bf16" if bf16 else "fp32", channels_last=cfg.channels_last,
                compile=cfg.compile)

    def step_fn(m, x, step):
        out = m(x)
        out["x_hat"] = out["x_hat"].float()
        L = rd_loss(out, x, lmbda)
        if aux:
            return {"main": L["loss"], "aux": m.aux_loss()}, L
        return L["loss"], L

    res_fit = h.fit(step_fn, lambda step: sampler.batch(cfg.batch))
    step, wall, log = res_fit["steps"], res_fit["wall_time_s"], h.history
    net = h.raw.to("cpu", memory_format=torch.contiguous_format).eval()   # safetensors stores contiguous tensors
    if compressai:
        from ..codecs.compressai_zoo import CompressAITrained

        net.update(force=True)
        net = CompressAITrained("bmshj2018-hyperprior", lmbda=lmbda, quality=cfg.quality if cfg.lmbda is None else 0,
                                net=net)
    else:
        net.update()
    net.name = name

    from ..eval.rd import evaluate_codec, rd_images

    metrics = []                         # --eval-limit 0: measured later (a GPU machine without the entropy coder)
    if cfg.eval_limit != 0:
        res = evaluate_codec(net, rd_images(cfg.eval_set, cfg.eval_limit))
        metrics = [{"set": cfg.eval_set, "images": len(res["images"]), "bpp (real bytes)": res["bpp"],
                    "bpp (estimated)": res["bpp_estimated"], "PSNR dB": res["psnr"], "MS-SSIM": res["ms_ssim"],
                    "encode ms": res["encode_ms"], "decode ms": res["decode_ms"]}]
    title = {"hyperprior": "Scale hyperprior (Ballé et al., ICLR 2018, arXiv:1802.01436)",
             "context": "Mean-scale hyperprior + autoregressive context (Minnen et al., NeurIPS 2018, arXiv:1809.02736)",
             "factorized": "Factorized prior (Ballé et al., ICLR 2017, arXiv:1611.01704)",
             "compressai-hyperprior": "CompressAI's own `ScaleHyperprior` class (Bégaint et al., arXiv:2011.03029; "
                                      "Ballé et al., ICLR 2018, arXiv:1802.01436), trained here by museumtok's harness "
                                      "with an aux optimizer for its entropy bottleneck's quantiles"}[model]
    init_note = f"initialised from `{cfg.init}` ({len(copied)} tensors copied), then " if cfg.init else ""
    from ..cards import hardware

    lineage = lineage + [{"checkpoint": name, "command": command, "steps": step, "wall_time_s": wall,
                          "hardware": hardware()}]
    total_steps = sum(r["steps"] or 0 for r in lineage)
    total_s = sum(r["wall_time_s"] or 0 for r in lineage)
    chain = ""
    if len(lineage) > 1:
        chain = (f"\nTraining history ({len(lineage)} runs, {total_steps} Adam steps and {total_s / 60:.1f} min of training "
                 "in all; each run is initialised from the checkpoint the run before it wrote):\n\n"
                 + "\n".join(f"{i + 1}. `{r['checkpoint']}`: {r['steps']} steps, "
                              f"{(r['wall_time_s'] or 0) / 60:.1f} min on {r.get('hardware') or 'unknown hardware'} — `{r['command']}`" for i, r in enumerate(lineage))
                 + "\n")
    save_with_card(
        net, out_dir, name,
        summary=(f"{title}, N={cfg.N}, M={cfg.M}, trained on R + λ·255²·MSE with λ = {lmbda} "
                 f"(CompressAI's quality {cfg.quality} λ). A small model trained for hours on a CPU (and minutes "
                 "on a GPU where its training history says so): expect it below CompressAI's published curve. Real bitstreams (range coder, integer tables in the checkpoint)."),
        data=(f"random {cfg.crop}×{cfg.crop} crops (random scale with short side in {list(cfg.scales)}, flips) "
              f"of the {len(load_catalog(split='train', collection='artworks'))} training-split artworks; Kodak never seen"),
        steps=(f"{init_note}{step} Adam steps of batch {cfg.batch} (lr {cfg.lr} after {cfg.warmup_steps} warm-up steps, "
               f"cosine to {cfg.lr / 20:g}, additive uniform noise; {res_fit['stopped_by']}, "
               f"{res_fit['cpu_time_s'] / 60:.1f} CPU-min)"),
        wall_time_s=wall, metrics=metrics, command=command,
        facts={"lineage": lineage, "total_steps": total_steps, "total_wall_time_s": total_s, "bf16": bf16,
               "cpu_time_s": res_fit["cpu_time_s"], "stopped_by": res_fit["stopped_by"]},
        extra=(chain + "\nTraining curve (EMA; bpp from likelihoods on training crops): \n\n"
               + "\n".join(f"- step {r['step']} ({r['min']} min): loss {r['loss']}, bpp {r['bpp']}, PSNR {r['psnr']:.2f} dB"
                           for r in log[:: max(1, len(log) // 10)])
               + f"\n\nConfig: `{asdict(cfg)}` (bf16 autocast: {bf16})\n"),
    )
    return out_dir


@register_trainer("hyperprior", NeuralCodecConfig, "scale hyperprior codec (§5.2, Ballé et al. 2018)")
def train_hyperprior(cfg: NeuralCodecConfig, command: str = "museumtok train hyperprior") -> Path:
    return train_codec("hyperprior", cfg, command)


@register_trainer("factorized", NeuralCodecConfig, "factorized-prior codec (§5.1, Ballé et al. 2017)")
def train_factorized(cfg: NeuralCodecConfig, command: str = "museumtok train factorized") -> Path:
    return train_codec("factorized", cfg, command)


@register_trainer("context", NeuralCodecConfig, "mean-scale hyperprior + autoregressive context (§5.2, Minnen et al. 2018)")
def train_context(cfg: NeuralCodecConfig, command: str = "museumtok train context") -> Path:
    return train_codec("context", cfg, command)


@register_trainer("compressai-hyperprior", NeuralCodecConfig,
                  "CompressAI's own ScaleHyperprior trained by our harness, like for like with `hyperprior` (§5.2)")
def train_compressai_hyperprior(cfg: NeuralCodecConfig, command: str = "museumtok train compressai-hyperprior") -> Path:
    return train_codec("compressai-hyperprior", cfg, command)
