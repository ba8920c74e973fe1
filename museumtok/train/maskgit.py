"""``museumtok train maskgit``: MaskGIT (Chang et al., CVPR 2022, arXiv:2202.04200) over a frozen tokenizer's tokens.

The tokenizer (``vqvae-f8-k1024`` by default) turns ``bank`` random training crops of ``crop`` px into
(crop/f)² token grids once; the transformer is then trained on those grids with the cosine mask
schedule (or, ``--causal true``, as the left-to-right autoregressive baseline of the same size).

    python -m museumtok train maskgit --crop 64 --batch-size 32 --steps 1500 --max-minutes 10       # maskgit-vqvae-f8-k1024-g8
    python -m museumtok train maskgit --causal true --crop 64 --batch-size 32 --steps 1500 --max-minutes 10  # ar-vqvae-f8-k1024-g8

The quality comparison of the two (held-out bits/token, inpainting PSNR) is ``museumtok.eval.generative``
(``benchmarks/maskgit_vs_ar_quality.py``).

Held-out metric: cross-entropy (nats/token) on the token grids of ``eval_set`` crops, masked positions
only at a fixed masking ratio of 50 % (MaskGIT) / all positions, teacher-forced (causal).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..models.maskgit import MaskGIT, MaskGITConfig
from . import nested_config, register_trainer
from .autoencoder import batch_for_step, train_images
from .harness import Harness, save_with_card


@nested_config
@dataclass
class MaskGITTrainConfig:
    tokenizer: str = "vqvae-f8-k1024"            # frozen tokenizer checkpoint (VQ-VAE or VQ-GAN folder name)
    crop: int = 64                               # crop side in px; grid = crop / f (64 px, f 8 -> 8×8 = 64 tokens)
    bank: int = 4096                             # training crops tokenized once up front
    max_zoom: float = 3.0                        # shrink to a short side in [crop, max_zoom·crop] before cropping
    model: MaskGITConfig = field(default_factory=MaskGITConfig)  # the transformer: --model.dim (or --dim), --depth,
                                                 # --heads, --dropout, --causal true (the AR baseline); its K, grid and
                                                 # tokenizer are set from the tokenizer
    steps: int = 1500                            # optimizer steps
    batch_size: int = 64                         # token grids per step
    lr: float = 1e-3                             # AdamW peak lr
    warmup: int = 100                            # linear warm-up
    weight_decay: float = 0.01                   # AdamW weight decay
    seed: int = 0                                # crops, masks and weights
    threads: int = 1                             # torch CPU threads
    max_minutes: float = 10.0                    # wall-time cap (0: none)
    stop_after: int = 0                          # stop after this many steps, lr schedule still over `steps`
                                                 # (0: never); matches another run's step count exactly
    log_every: int = 50                          # train_log row every this many steps
    eval_every: int = 250                        # held-out cross-entropy every this many steps
    eval_set: str = "artworks-val"               # held-out images, cropped to `crop` px tiles
    device: str = "auto"                         # "auto" (a GPU when there is one), "cpu" or "cuda"
    precision: str = "fp32"                      # "fp32", or "bf16" autocast
    save_every: int = 0                          # resume state every this many steps (0: none)
    resume: bool = False                         # continue from <run_dir>/state when it exists
    run_dir: str | None = None                   # logs; default ~/.cache/museumtok/runs/<name>
    out: str | None = None                       # checkpoint folder; default data/checkpoints/<name>
    name: str | None = None                      # default maskgit-<tokenizer>-g<grid> (ar-… when causal)


def load_tokenizer_model(name: str):
    from ..models.vqgan import VQGAN
    from ..models.vqvae import VQVAE
    from ..paths import CHECKPOINT_DIR

    path = Path(name) if Path(name).is_dir() else CHECKPOINT_DIR / name
    cfg = json.loads((path / "config.json").read_text())
    cls = VQGAN if "disc_channels" in cfg else VQVAE
    return cls.from_pretrained(str(path)).eval()


@torch.no_grad()
def token_bank(ae, images, n: int, crop: int, max_zoom: float, seed: int, batch: int = 128) -> torch.Tensor:
    """(n, h, w) token grids of n random training crops."""
    out = []
    for s in range(0, n, batch):
        x = batch_for_step(images, s // batch, min(batch, n - s), crop, max_zoom, seed + 1)
        out.append(ae.encode_indices(x))
    return torch.cat(out)


@torch.no_grad()
def held_out_tokens(ae, set_name: str, crop: int) -> torch.Tensor:
    """Token grids of the held-out images at 2·crop px, cut into 4 crop-px tiles each: (4·n, h, w)."""
    from einops import rearrange

    from ..data.dataset import eval_batch

    x, _ = eval_batch(set_name, 2 * crop)
    tiles = rearrange(x, "n c (a h) (b w) -> (n a b) c h w", a=2, b=2)
    return ae.encode_indices(tiles)


@torch.no_grad()
def held_out_ce(model: MaskGIT, k: torch.Tensor, seed: int = 0) -> float:
    """Cross-entropy in nats/token: masked positions at a fixed ratio γ = 0.5 (MaskGIT) or teacher-forced (causal)."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    r = torch.full((len(k),), 2 / 3)  # cos(π/2 · 2/3) = 0.5
    if model.config.causal:
        ce = float(model.loss(k)["loss"])
    else:
        from ..models.maskgit import random_mask
        import torch.nn.functional as F

        kk = k.reshape(len(k), -1)
        m = random_mask(len(k), kk.shape[1], g, r=r).to(kk.device)
        logits = model(torch.where(m, torch.full_like(kk, model.mask_id), kk))
        ce = float(F.cross_entropy(logits[m], kk[m]))
    model.train(was)
    return ce


@register_trainer("maskgit", MaskGITTrainConfig, "MaskGIT (or its causal AR baseline) on frozen VQ tokens (§4.6)")
def train(cfg: MaskGITTrainConfig, command: str = "museumtok train maskgit") -> Path:
    from ..paths import CHECKPOINT_DIR, cache_dir

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ae = load_tokenizer_model(cfg.tokenizer)
    grid = cfg.crop // ae.f
    causal = cfg.model.causal
    name = cfg.name or f"{'ar' if causal else 'maskgit'}-{Path(cfg.tokenizer).name}-g{grid}"
    run_dir = Path(cfg.run_dir) if cfg.run_dir else cache_dir("runs", name)
    images, n_train = train_images()
    t0 = time.time()
    bank = token_bank(ae, images, cfg.bank, cfg.crop, cfg.max_zoom, cfg.seed)       # (n, h, w)
    k_val = held_out_tokens(ae, cfg.eval_set, cfg.crop)
    t_bank = time.time() - t0
    model = MaskGIT(replace(cfg.model, codebook_size=ae.codebook_size, grid=(grid, grid),
                            tokenizer=Path(cfg.tokenizer).name))
    c = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    h = Harness(model, opt, steps=cfg.steps, warmup=cfg.warmup, max_minutes=cfg.max_minutes, clip=1.0,
                run_dir=run_dir, resume=cfg.resume, save_every=cfg.save_every, log_every=cfg.log_every,
                eval_every=cfg.eval_every, evaluate=lambda m: {"val_ce": held_out_ce(m, k_val.to(h.device))},
                final_eval=False, stop_after=cfg.stop_after or None, generators={"masks": g}, rngs={"batches": rng},
                device=cfg.device, precision=cfg.precision)

    def step_fn(m, k, step):
        out = h.raw.loss(k, g)                                     # masks drawn on the CPU generator
        return out["loss"], {"loss": out["loss"], "mask_fraction": out["mask_fraction"]}

    res = h.fit(step_fn, lambda step: bank[torch.tensor([rng.randrange(len(bank)) for _ in range(cfg.batch_size)])])
    step, wall = res["steps"], res["wall_time_s"]
    stopped_by = f"stop_after={cfg.stop_after}" if res["stopped_by"] == "stop_after" else res["stopped_by"]
    model = h.raw.cpu().eval()
    ce = held_out_ce(model, k_val)
    # unigram baseline: the entropy of the training-bank code frequencies, in nats
    p = torch.bincount(bank.reshape(-1), minlength=ae.codebook_size).float()
    p = p[p > 0] / p.sum()
    unigram = float(-(p * p.log()).sum())
    out_dir = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    what = ("left-to-right autoregressive prior (the causal baseline of MaskGIT, same size)" if causal else
            "MaskGIT (Chang et al., CVPR 2022, arXiv:2202.04200): bidirectional transformer, cosine mask schedule")
    save_with_card(
        model, out_dir, name,
        summary=(f"{what} over the {grid}×{grid} token grids of `{Path(cfg.tokenizer).name}` (K={ae.codebook_size}); "
                 f"d={c.dim}, L={c.depth}, {c.heads} heads, "
                 f"{sum(q.numel() for q in model.parameters()) / 1e6:.2f} M parameters. Small and CPU-trained: "
                 "a teaching model, not a generator of convincing images."),
        data=(f"{cfg.bank} random {cfg.crop}×{cfg.crop} crops of the {n_train} training-split artworks, tokenized once "
              f"({t_bank:.0f} s); held out: {cfg.eval_set} at {2 * cfg.crop} px cut into 4 tiles ({len(k_val)} grids)"),
        steps=f"{step} steps of batch {cfg.batch_size} (AdamW, lr {cfg.lr:g}, stopped by {stopped_by})",
        wall_time_s=wall,
        metrics=[{"set": cfg.eval_set, "grids": len(k_val),
                  "val_ce_nats": round(ce, 4), "unigram_entropy_nats": round(unigram, 4),
                  "measured_on": "masked positions at γ = 0.5" if not causal else "all positions, teacher-forced"}],
        command=command,
        extra=f"\nConfig: `{asdict(cfg)}`\n",
    )
    print(json.dumps({"checkpoint": str(out_dir), "steps": step, "wall_time_s": wall, "val_ce": ce,
                      "unigram_entropy": unigram}, indent=1))
    return out_dir
