"""``museumtok train lloyd-patch``: fit the patch codebooks of §4.1 on the training artworks."""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.catalog import load_catalog
from ..data.dataset import _preload, random_crop
from ..data.images import working_image
from ..eval.metrics import evaluate_tokenizer
from ..paths import CHECKPOINT_DIR
from ..quantize.lloyd import fit_codebook
from ..tokenizers.lloyd_patch import LloydPatchTokenizer
from . import register_trainer
from .harness import save_with_card


@dataclass
class LloydPatchConfig:
    K: int = 1024                    # codebook size
    patch: int = 8                   # patch side p (pixels); token count M = (S/p)²
    sizes: tuple[int, ...] = (64, 128, 256)  # working sizes S the codebook serves
    crops_per_image: int = 4         # random crops per image and size, besides the centre crop
    n_patches: int = 200_000         # patches kept for fitting (random subsample)
    iters: int = 30                  # Lloyd iterations (full passes) for "batch"
    method: str = "batch"            # "batch", "minibatch" or "ema" (Appendix B, Alg. 1)
    seed: int = 0                    # seeds the crops, the subsample and k-means++
    out: str | None = None           # output folder; default data/checkpoints/lloyd-patch-k{K}
    eval_sets: tuple[str, ...] = field(default=("artworks-val", "artworks-test", "kodak"))  # held-out sets in the card


def collect_patches(cfg: LloydPatchConfig, split: str = "train") -> torch.Tensor:
    rng = random.Random(cfg.seed)
    images = _preload(load_catalog(split=split, collection="artworks"), 768, verify=False)
    tok = LloydPatchTokenizer(cfg.K, cfg.patch, cfg.sizes)
    chunks = []
    for img in tqdm(images, desc="patches"):
        for s in cfg.sizes:
            crops = [working_image(img, s).x] + [random_crop(img, s, 3.0, rng) for _ in range(cfg.crops_per_image)]
            z = tok.patchify(torch.stack(crops))
            chunks.append(z.reshape(-1, z.shape[-1]))
    z = torch.cat(chunks)
    g = torch.Generator().manual_seed(cfg.seed)
    if len(z) > cfg.n_patches:
        z = z[torch.randperm(len(z), generator=g)[: cfg.n_patches]]
    return z


@register_trainer("lloyd-patch", LloydPatchConfig, "k-means codebook of RGB patches (§4.1)")
def train(cfg: LloydPatchConfig, command: str = "museumtok train lloyd-patch") -> Path:
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    z = collect_patches(cfg)
    res = fit_codebook(z, cfg.K, iters=cfg.iters, method=cfg.method, seed=cfg.seed)
    wall = time.time() - t0
    tok = LloydPatchTokenizer(cfg.K, cfg.patch, cfg.sizes)
    tok.codebook.copy_(res.codebook.float())
    tok.name = f"lloyd-patch-k{cfg.K}"
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / tok.name
    metrics = []
    for set_name in cfg.eval_sets:
        for M in tok.supported_M:
            r = evaluate_tokenizer(tok, set_name, M)
            metrics.append({k: r[k] for k in ("set", "M", "size", "images", "psnr", "ssim", "ms_ssim", "usage", "perplexity", "bpp")})
    hist = ", ".join(f"{d:.4f}" for d in res.history[:: max(1, len(res.history) // 10)])
    # the harness's common end (k-means has no optimizer to schedule: its loop is quantize.lloyd.fit_codebook)
    return save_with_card(
        tok, out, tok.name, prior=True,   # + prior.json: code counts per M on artworks-train
        summary=(f"Lloyd-Max / k-means codebook of K={cfg.K} RGB patches of {cfg.patch}×{cfg.patch} px "
                 f"(§4.1, Appendix B Alg. 1), k-means++ initialisation, {cfg.method} Lloyd updates. "
                 f"M = (S/{cfg.patch})² tokens for a working image of S px."),
        data=(f"{len(z)} patches from the {len(load_catalog(split='train', collection='artworks'))} training-split artworks "
              f"at working sizes {list(cfg.sizes)} (centre crop + {cfg.crops_per_image} random crops each); "
              "Kodak never seen"),
        steps=f"{res.iterations} {cfg.method} Lloyd iterations over the patch set",
        wall_time_s=wall, metrics=metrics, command=command,
        extra=(f"\nDistortion (mean squared error per patch, summed over {3 * cfg.patch**2} values) during "
               f"fitting, every ~10%: {hist}\n\nMS-SSIM at 64 and 128 px uses 3 and 4 scales "
               "(the 5 standard scales need ≥161 px), weights renormalised.\n\nConfig: `"
               + str(asdict(cfg)) + "`\n"),
    )
