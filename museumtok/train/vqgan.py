"""``museumtok train vqgan``: VQ-GAN (Esser et al., CVPR 2021, arXiv:2012.09841) on the training artworks.

By default it fine-tunes the decoder of the bundled ``vqvae-f8-k1024`` with the VQ-GAN losses, encoder
and codebook frozen (``--finetune decoder``): the tokens stay exactly those of ``vqvae-f8-k1024`` (so a
MaskGIT trained on them serves both) and only their rendering changes — the cheapest meaningful VQ-GAN
on a CPU. ``--finetune all`` also trains encoder and codebook; ``--init none`` trains from scratch.

    python -m museumtok train vqgan --steps 300 --max-minutes 15          # vqgan-f8-k1024
    python -m museumtok train vqgan --steps 20 --out /tmp/vg --run-dir /tmp/vg-run

Two Adam optimizers (generator: encoder + decoder + codebook; discriminator), one step each per batch
once ``disc_start`` is reached, on :class:`museumtok.train.harness.Harness`. Logs ``train_log.csv`` /
``eval_log.csv`` in the run folder. Runs are short, so by default there is no mid-run resume state
(``--save-every N --resume true`` keeps one).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models.vqgan import VQGAN, VQGANConfig
from . import register_trainer
from .autoencoder import batch_for_step, final_metrics, held_out_eval, train_images
from .harness import Harness, resolve_checkpoint, save_with_card


@dataclass
class VQGANTrainConfig:
    init: str = "vqvae-f8-k1024"                 # checkpoint under data/checkpoints to start from ("none": scratch)
    finetune: str = "decoder"                    # "decoder": encoder + codebook frozen (tokens = init's); "all"
    perceptual: str = "auto"                     # "auto" (LPIPS if cached, else 1 − MS-SSIM), "lpips", "ms_ssim", "none"
    perceptual_weight: float = 1.0               # w_p
    disc_channels: int = 32                      # PatchGAN width
    disc_layers: int = 3                         # PatchGAN depth (3: 70×70 px patches)
    disc_weight: float = 0.8                     # w_d
    disc_start: int = 50                         # steps of reconstruction-only training before the GAN term
    steps: int = 400                             # generator steps
    batch_size: int = 8                          # crops per step
    crop: int = 64                               # crop side in px
    max_zoom: float = 3.0                        # shrink images to a short side in [S, max_zoom·S] before cropping
    lr: float = 1e-4                             # Adam lr of the generator (fine-tuning: small)
    lr_d: float = 1e-4                           # Adam lr of the discriminator
    warmup: int = 20                             # linear warm-up steps
    seed: int = 0                                # crops and weights
    threads: int = 1                             # torch CPU threads
    max_minutes: float = 15.0                    # wall-time cap (0: none)
    log_every: int = 10                          # train_log row every this many steps
    eval_every: int = 100                        # held-out PSNR every this many steps
    eval_set: str = "artworks-val"               # held-out set during training
    eval_size: int = 128                         # its working size
    final_eval_sets: tuple[str, ...] = field(default=("artworks-val", "artworks-test", "kodak"))  # for the card
    device: str = "auto"                         # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"                      # "fp32", or "bf16" autocast
    save_every: int = 0                          # resume state every this many steps (0: none, as runs are short)
    resume: bool = False                         # continue from <run_dir>/state when it exists
    run_dir: str | None = None                   # logs (+ resume state); default ~/.cache/museumtok/runs/<name>
    out: str | None = None                       # checkpoint folder; default data/checkpoints/<name>
    name: str | None = None                      # default vqgan-f8-k1024


def build_model(cfg: VQGANTrainConfig) -> VQGAN:
    from ..models.vqvae import VQVAE

    over = dict(perceptual=cfg.perceptual, perceptual_weight=cfg.perceptual_weight, disc_channels=cfg.disc_channels,
                disc_layers=cfg.disc_layers, disc_weight=cfg.disc_weight, disc_start=cfg.disc_start)
    if cfg.init and cfg.init != "none":
        return VQGAN.from_vqvae(VQVAE.from_pretrained(str(resolve_checkpoint(cfg.init))), **over)
    return VQGAN(VQGANConfig(**over))


def fit_vqgan(model: VQGAN, cfg: VQGANTrainConfig, images, run_dir: Path, x_val=None) -> dict:
    """The two-player loop on :class:`Harness` (G then D each step); returns steps, wall time and why it stopped."""
    if cfg.finetune not in ("decoder", "all"):
        raise ValueError(f"finetune must be 'decoder' or 'all', got {cfg.finetune!r}")
    prefixes = ("decoder.",) if cfg.finetune == "decoder" else ("encoder.", "decoder.", "quantizer.")
    g_params = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
    if cfg.finetune == "decoder":  # tokens stay those of the initial VQ-VAE: no EMA updates, no restarts
        model.encoder.requires_grad_(False)
        model.quantizer.requires_grad_(False)
    opts = {"g": torch.optim.Adam(g_params, lr=cfg.lr, betas=(0.5, 0.9)),
            "d": torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9))}
    K = model.codebook_size
    h = Harness(model, opts, steps=cfg.steps, warmup=cfg.warmup, max_minutes=cfg.max_minutes, run_dir=run_dir,
                resume=cfg.resume, save_every=cfg.save_every, log_every=cfg.log_every, eval_every=cfg.eval_every,
                evaluate=(lambda m: held_out_eval(m, x_val, K)) if x_val is not None else None, final_eval=False,
                device=cfg.device, precision=cfg.precision)

    def step_fn(m, x, step):
        m = h.raw
        if cfg.finetune == "decoder":
            m.encoder.eval()
            m.quantizer.eval()                 # eval mode: no EMA update, no dead-code restart
        out = m.generator_step(x, step)
        d = m.discriminator_loss(x, out.x_hat) if step >= cfg.disc_start else {}
        row = {"loss": out.loss, **out.losses}
        for k in ("g_loss", "lambda_adaptive", "d_loss", "logits_real", "logits_fake"):  # fixed CSV columns
            row[k] = d[k] if k in d else out.losses[k] if k in out.losses else float("nan")
        # G steps on its loss; then D (its zero_grad also drops the generator pass's gradients in D)
        return {"g": out.loss, "d": d.get("d_loss")}, row

    process = h.accelerator.process_index
    res = h.fit(step_fn, lambda step: batch_for_step(images, step, cfg.batch_size, cfg.crop, cfg.max_zoom, cfg.seed,
                                                     process))
    return res


@torch.no_grad()
def sharpness_table(model, init_model, sets, size: int) -> str:
    """Markdown table: PSNR and sharpness (Laplacian energy of x̂ over x's) of the model and its init, per set."""
    from ..data.dataset import eval_batch
    from ..metrics.image import psnr, sharpness_ratio

    rows = ["| set | size | model | PSNR (dB) | sharpness x̂/x |", "|---|---|---|---|---|"]
    for set_name in sets:
        x, _ = eval_batch(set_name, size)
        for label, m in (("init (VQ-VAE)", init_model), ("VQ-GAN", model)):
            if m is None:
                continue
            x_hat = torch.cat([m.decode_indices(m.encode_indices(x[i:i + 16])) for i in range(0, len(x), 16)])
            rows.append(f"| {set_name} | {size} | {label} | {psnr(x, x_hat).mean().item():.2f} | "
                        f"{sharpness_ratio(x_hat, x).mean().item():.3f} |")
    return "Sharpness next to the initial model (1.0 = as sharp as the original, < 1 blurrier):\n\n" + "\n".join(rows)


@register_trainer("vqgan", VQGANTrainConfig, "VQ-GAN: VQ-VAE + PatchGAN + perceptual term (§4.5)")
def train(cfg: VQGANTrainConfig, command: str = "museumtok train vqgan") -> Path:
    from ..data.dataset import eval_batch
    from ..paths import CHECKPOINT_DIR, cache_dir
    from ..tokenizers.autoencoder import VQGANTokenizer

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    name = cfg.name or f"vqgan-f{model.f}-k{model.codebook_size}"
    run_dir = Path(cfg.run_dir) if cfg.run_dir else cache_dir("runs", name)
    images, n_train = train_images()
    x_val, _ = eval_batch(cfg.eval_set, cfg.eval_size)
    before = held_out_eval(model, x_val, model.codebook_size)
    res = fit_vqgan(model, cfg, images, run_dir, x_val)
    tok = VQGANTokenizer(model)
    tok.name = name
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    metrics = final_metrics(tok, cfg.final_eval_sets)
    scope = (f"decoder only: encoder and codebook frozen, so the tokens are identical to {cfg.init}'s"
             if cfg.finetune == "decoder" else "encoder, codebook and decoder")
    compare = sharpness_table(model, build_model(VQGANTrainConfig(init=cfg.init)) if cfg.init != "none" else None,
                              cfg.final_eval_sets, cfg.eval_size)
    save_with_card(
        tok, out, name, prior=True,
        summary=(f"VQ-GAN (Esser, Rombach & Ommer, CVPR 2021, arXiv:2012.09841): the VQ-VAE architecture "
                 f"fine-tuned from `{cfg.init}` ({scope}) with L1 + {cfg.perceptual_weight:g}·L_perc + VQ terms + adaptive-weight "
                 f"hinge GAN (PatchGAN {cfg.disc_layers} layers, width {cfg.disc_channels}, from step {cfg.disc_start}). "
                 f"**Perceptual term used: {model.perceptual_name}**"
                 + (" — LPIPS weights were not available, so this is 1 − MS-SSIM, a structural loss, not LPIPS."
                    if model.perceptual_name != "lpips-alex" else ".")),
        data=(f"random {cfg.crop}×{cfg.crop} crops of the {n_train} training-split artworks; validation "
              f"{cfg.eval_set} at {cfg.eval_size} px; Kodak and artworks-test never seen in training"),
        steps=f"{res['steps']} generator + discriminator steps of batch {cfg.batch_size} (stopped by {res['stopped_by']})",
        wall_time_s=res["wall_time_s"], metrics=metrics, command=command,
        extra=(f"\nHeld-out {cfg.eval_set} PSNR at {cfg.eval_size} px before fine-tuning: {before['psnr']:.2f} dB. "
               f"Full log: `eval_log.csv`.\n\n{compare}\n\nConfig: `{asdict(cfg)}`\n"),
    )
    shutil.copy(run_dir / "eval_log.csv", out / "eval_log.csv")
    print(json.dumps({"checkpoint": str(out), **res}, indent=1))
    return out
