"""MaskGIT's parallel decoding against raster-order autoregressive decoding, side by side.

Two transformers of the same size (``museumtok.models.maskgit.MaskGIT``: the bidirectional one and its
``causal=True`` variant), the same token grid, both generating a full grid from nothing:

* MaskGIT: T forward passes (``--steps``, the paper's 8 by default), all positions at once;
* autoregressive: N = h·w forward passes, one token each (no KV cache in either model).

Prints the number of forward passes and the median wall time of each, and the ratio AR / MaskGIT.
Weights are random: this measures cost, not quality (``maskgit_vs_ar_quality.py`` compares the trained checkpoints).

    OMP_NUM_THREADS=1 python benchmarks/maskgit_vs_ar.py [--grid 16] [--steps 8] [--repeats 3] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's museumtok first


def main(argv=None):
    from museumtok.models.maskgit import MaskGIT, MaskGITConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=16, help="token grid side (16: 256 tokens, a 128 px image at f=8)")
    ap.add_argument("--steps", type=int, default=8, help="MaskGIT decoding steps T")
    ap.add_argument("--K", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(codebook_size=a.K, grid=(a.grid, a.grid), dim=a.dim, depth=a.depth, heads=4, dropout=0.0)
    mg = MaskGIT(MaskGITConfig(**cfg)).to(a.device).eval()
    ar = MaskGIT(MaskGITConfig(**cfg, causal=True)).to(a.device).eval()
    n_params = sum(p.numel() for p in mg.parameters())
    start = torch.full((a.batch, a.grid, a.grid), a.K, device=a.device)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    times = {"maskgit": [], "ar": []}
    passes = {}
    for _ in range(a.repeats):  # interleaved
        for name, fn, model in (("maskgit", lambda: mg.decode(start, steps=a.steps), mg),
                                ("ar", lambda: ar.generate_autoregressive(a.batch), ar)):
            model.forward_passes = 0
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
            passes[name] = model.forward_passes
    t_mg, t_ar = statistics.median(times["maskgit"]), statistics.median(times["ar"])
    print(f"grid {a.grid}×{a.grid} = {a.grid ** 2} tokens, K={a.K}, d={a.dim}, L={a.depth}, "
          f"{n_params / 1e6:.2f} M params each, batch {a.batch}, {a.device}, {a.threads} thread(s), median of {a.repeats}")
    print(f"{'decoder':<16}{'forward passes':>16}{'wall (s)':>12}")
    print(f"{'MaskGIT T=' + str(a.steps):<16}{passes['maskgit']:>16}{t_mg:>12.3f}")
    print(f"{'autoregressive':<16}{passes['ar']:>16}{t_ar:>12.3f}")
    print(f"ratio AR / MaskGIT: forward passes {passes['ar'] / passes['maskgit']:.1f}×, wall time {t_ar / t_mg:.1f}×")


if __name__ == "__main__":
    main()
