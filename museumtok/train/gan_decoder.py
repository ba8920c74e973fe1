"""``museumtok train gan-decoder``: HiFiC's adversarial decoder on the frozen ``hyperprior-q3`` (§5.3).

Mentzer et al. (NeurIPS 2020, arXiv:2006.09965) train a hyperprior codec with a conditional GAN. Here
only the synthesis transform g_s is fine-tuned (:mod:`museumtok.codecs.learned.hific`: k_M·MSE + k_P·(1 − MS-SSIM)
+ β·(−log D(x̂, ŷ)), the package's PatchGAN conditioned on ŷ); g_a, h_a, h_s and the entropy models
are frozen, so every image is coded into **exactly the same bytes** as by ``hyperprior-q3``. Measured
like the VQ-GAN card: PSNR and sharpness (Laplacian energy of x̂ over x's,
:func:`museumtok.metrics.image.sharpness_ratio`) of both decoders on the same bitstreams of held-out images.

    museumtok train gan-decoder --max-minutes 6 --results docs/s53/results.json --png docs/s53/gan_decoder_kodak.png

Random crops of the training-split artworks (:class:`museumtok.train.neural_codecs.CropSampler`), one
torch thread, a CPU-time budget (``time.process_time``) capped in wall time; the checkpoint goes to
``--out`` (default ``~/.cache/museumtok/runs/gan-decoder-on-<init>``), not to ``data/checkpoints``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import register_trainer
from .harness import Harness


@dataclass
class GANDecoderConfig:
    init: str = "hyperprior-q3"        # frozen hyperprior under data/checkpoints (or a folder); its g_s is the start
    k_mse: float = 0.075 * 2 ** -5     # k_M on the MSE of 0…255 pixels (HiFiC's value)
    k_perceptual: float = 1.0          # k_P on 1 − MS-SSIM (LPIPS in HiFiC; its weights are not here)
    beta: float = 0.15                 # β on the generator's adversarial term (HiFiC's value)
    gan_loss: str = "non-saturating"   # "non-saturating" (HiFiC) or "hinge" (VQ-GAN)
    conditional: bool = True           # D sees ŷ (HiFiC) or the image only
    disc_channels: int = 32            # PatchGAN width
    disc_layers: int = 3               # PatchGAN depth
    disc_norm: str = "batch"           # PatchGAN normalisation: "batch" (pix2pix), "spectral" (HiFiC) or "none"
    crop: int = 128                    # crop side in px (a multiple of 64)
    scales: tuple[int, ...] = (256, 384, 512, 768)  # short sides the training artworks are kept at
    batch: int = 8                     # crops per step
    lr: float = 1e-4                   # Adam lr of g_s (fine-tuning; linear warm-up, then cosine to lr/10)
    lr_d: float = 4e-4                 # Adam lr of D (faster than G: two time-scale rule, Heusel et al. 2017)
    warmup_steps: int = 20             # linear warm-up of both learning rates
    disc_warmup_steps: int = 50        # first steps train only D (g_s frozen), so G's first adversarial gradients mean something
    max_minutes: float = 5.5           # training budget in CPU minutes of this process
    max_wall_minutes: float = 10.0     # hard cap in wall minutes
    max_steps: int = 1_000_000         # or stop after this many steps
    log_every: int = 25                # a curve point every this many steps
    seed: int = 0                      # crops and the discriminator's initialisation
    eval_set: str = "kodak"            # held-out set: both decoders on the same bitstreams
    eval_limit: int | None = None      # its first images only (None: all)
    threads: int = 1                   # torch threads
    device: str = "cpu"                # "cpu" (the budget is this process's CPU time), "auto" or "cuda"
    out: str | None = None             # checkpoint folder (default ~/.cache/museumtok/runs/gan-decoder-on-<init>)
    results: str | None = None         # JSON file the measured numbers are merged into (e.g. docs/s53/results.json)
    png: str | None = None             # picture: original | MSE decoder | GAN decoder on three held-out crops


class TensorCropSampler:
    """Random crop×crop crops (with flips) of images already in memory, (N, 3, H, W): for short demos;
    :class:`museumtok.train.neural_codecs.CropSampler` (all training artworks, several scales) trains."""

    def __init__(self, images: torch.Tensor, crop: int, seed: int = 0):
        self.images, self.crop = images, crop
        self.g = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> torch.Tensor:
        N, _, H, W = self.images.shape
        out = []
        for _ in range(n):
            i, t, l, f = (int(torch.randint(hi, (1,), generator=self.g)) for hi in (N, H - self.crop + 1, W - self.crop + 1, 2))
            c = self.images[i, :, t : t + self.crop, l : l + self.crop]
            out.append(c.flip(-1) if f else c)
        return torch.stack(out)                                        # (n, 3, crop, crop)


def gan_decoder_from(hp, g_s_state: dict | None = None):
    """A copy of the hyperprior ``hp`` with its own g_s (optionally loaded from ``g_s_state``): the same encoder,
    entropy models and bitstream format, another decoder."""
    net = copy.deepcopy(hp)
    if g_s_state is not None:
        net.g_s.load_state_dict(g_s_state)
    return net


def fit_gan_decoder(net, disc, sampler, cfg: GANDecoderConfig, hcfg, perceptual: str) -> dict:
    """Fine-tune ``net.g_s`` against ``disc`` for ``cfg.max_minutes`` CPU minutes (:class:`Harness`, ``clock="cpu"``:
    G then D each step); returns steps, times, why it stopped and the curve (EMA of the losses and sharpness)."""
    from ..metrics import sharpness_ratio
    from ..codecs.learned.hific import discriminator_loss, generator_loss

    for m in (net.g_a, net.h_a, net.h_s, net.entropy_bottleneck, net.gaussian_conditional):
        m.requires_grad_(False)
    pair = torch.nn.ModuleDict({"net": net, "disc": disc})
    opts = {"g": torch.optim.Adam(net.g_s.parameters(), lr=cfg.lr, betas=(0.5, 0.9)),
            "d": torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9))}
    h = Harness(pair, opts, steps=cfg.max_steps, warmup=cfg.warmup_steps, max_minutes=cfg.max_minutes, clock="cpu",
                max_wall_minutes=cfg.max_wall_minutes, schedule="time", min_lr_ratio=0.1,
                log_every=cfg.log_every, reduce=0.95, device=cfg.device,
                row_fn=lambda r: {"step": r["step"], "cpu_min": round(r["cpu_s"] / 60, 3),
                                  "wall_min": round(r["wall_s"] / 60, 3),
                                  **{k: v for k, v in r.items() if k not in ("step", "cpu_s", "wall_s", "lr")}})

    def step_fn(m, x, step):                                           # x (B, 3, S, S)
        net, disc = m["net"], m["disc"]
        with torch.no_grad():
            y_hat = torch.round(net.g_a(x))                            # the symbols the bitstream carries
        d_only = step < cfg.disc_warmup_steps                          # first steps: D only, g_s frozen
        with torch.set_grad_enabled(not d_only):
            x_hat = net.g_s(y_hat)
            g = generator_loss(x, x_hat, y_hat, disc, hcfg, perceptual)
        d = discriminator_loss(x, x_hat, y_hat, disc, hcfg)
        logs = {"loss": g["loss"], "psnr": -10 * torch.log10(g["mse"].clamp_min(1e-10)),
                "sharpness": sharpness_ratio(x_hat.detach(), x).mean(), "perceptual": g["perceptual"],
                "adversarial": g["adversarial"], "d_loss": d["d_loss"], "logits_real": d["logits_real"],
                "logits_fake": d["logits_fake"]}
        # G steps first; D's zero_grad then also drops the G pass's gradients in D
        return {"g": None if d_only else g["loss"], "d": d["d_loss"]}, logs

    res = h.fit(step_fn, lambda step: sampler.batch(cfg.batch))
    net.eval()
    disc.eval()
    return {"steps": res["steps"], "cpu_s": res["cpu_time_s"], "wall_s": res["wall_time_s"],
            "stopped_by": res["stopped_by"], "curve": h.history}


@torch.no_grad()
def compare_decoders(hp, gan, images) -> list[dict]:
    """Each image coded once by ``hp``; the same bytes decoded by both decoders: PSNR, MS-SSIM, sharpness."""
    from ..metrics import ms_ssim, psnr, sharpness_ratio

    rows = []
    for img_id, x in images:
        enc = hp.compress(x)
        if gan.compress(x).data != enc.data:
            raise AssertionError(f"{img_id}: the GAN decoder's codec writes other bytes; its encoder changed")
        row = {"image": img_id, "bytes": len(enc.data), "bpp": 8 * len(enc.data) / (x.shape[-2] * x.shape[-1])}
        for label, codec in (("mse", hp), ("gan", gan)):
            x_hat = codec.decompress(enc)
            row[f"psnr_{label}"] = float(psnr(x, x_hat)[0])
            row[f"ms_ssim_{label}"] = float(ms_ssim(x[None], x_hat[None])[0])
            row[f"sharpness_{label}"] = float(sharpness_ratio(x_hat, x)[0])
        rows.append(row)
    return rows


@torch.no_grad()
def decoders_png(path, hp, gan, set_name: str = "kodak", indices=(0, 4, 22), size: int = 96, scale: int = 2):
    """Original | MSE decoder | GAN decoder, centre ``size`` px squares of full images coded once (same bytes)."""
    from ..data.catalog import named_set
    from ..data.images import load_image, pil_to_tensor
    from ..viz import reconstruction_panel

    entries = named_set(set_name)
    xs, rec = [], {"hyperprior-q3 (MSE decoder)": [], "GAN decoder (same bytes)": []}
    for i in indices:
        x = pil_to_tensor(load_image(entries[i].find()).image)
        enc = hp.compress(x)
        H, W = x.shape[-2:]
        t, l = (H - size) // 2, (W - size) // 2
        xs.append(x[:, t : t + size, l : l + size])
        for (title, out), codec in zip(rec.items(), (hp, gan)):
            out.append(codec.decompress(enc)[:, t : t + size, l : l + size])
    img = reconstruction_panel(torch.stack(xs), {k: torch.stack(v) for k, v in rec.items()}, scale=scale)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return img


@register_trainer("gan-decoder", GANDecoderConfig,
                  "HiFiC-style adversarial g_s on the frozen hyperprior-q3: same bytes, sharper decoding (§5.3)")
def train(cfg: GANDecoderConfig, command: str = "museumtok train gan-decoder") -> Path:
    from ..cards import hardware
    from ..codecs.learned.hific import ConditionalPatchGAN, HiFiCConfig
    from ..models.vqgan import perceptual_name
    from ..paths import cache_dir
    from ..eval.rd import rd_images
    from .entropy_context import _hyperprior, merge_results, summarise
    from .neural_codecs import CropSampler

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {cfg.crop}")
    hp, path = _hyperprior(cfg.init)
    net = gan_decoder_from(hp)
    hcfg = HiFiCConfig(M=hp.cfg.M, k_mse=cfg.k_mse, k_perceptual=cfg.k_perceptual, beta=cfg.beta,
                       gan_loss=cfg.gan_loss, conditional=cfg.conditional, disc_channels=cfg.disc_channels,
                       disc_layers=cfg.disc_layers, disc_norm=cfg.disc_norm)
    disc = ConditionalPatchGAN(hcfg)
    perceptual = perceptual_name("auto")
    sampler = CropSampler(cfg.crop, cfg.scales, cfg.seed)
    res = fit_gan_decoder(net, disc, sampler, cfg, hcfg, perceptual)
    name = f"gan-decoder-on-{path.name}"
    out = Path(cfg.out) if cfg.out else cache_dir("runs", name)
    net.name = name
    net.save_pretrained(out)

    rows = compare_decoders(hp, net, rd_images(cfg.eval_set, cfg.eval_limit))
    summary = {"init": cfg.init, "perceptual": perceptual, "set": cfg.eval_set, **summarise(rows),
               **{k: v for k, v in res.items() if k != "curve"}, "curve": res["curve"], "images": rows,
               "command": command, "hardware": hardware(), "checkpoint": str(out), "config": asdict(cfg),
               "hific": asdict(hcfg)}
    print(json.dumps({k: v for k, v in summary.items() if k not in ("curve", "images", "config", "hific")}, indent=1))
    if cfg.png:
        decoders_png(cfg.png, hp, net, cfg.eval_set)
        summary["png"] = cfg.png
    if cfg.results:
        merge_results(cfg.results, "gan_decoder", name, summary)
    return out
