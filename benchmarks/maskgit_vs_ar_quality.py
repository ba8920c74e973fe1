"""MaskGIT against the autoregressive baseline on held-out tokens: likelihood and inpainting quality.

The trained checkpoints ``maskgit-vqvae-f8-k1024-g8`` and ``ar-vqvae-f8-k1024-g8`` (same size, same
tokens of the frozen ``vqvae-f8-k1024``, same data, steps cap and wall-time cap) on 64 px crops of the
held-out sets (``museumtok.eval.generative``):

* bits/token: AR exact (teacher forcing); MaskGIT by the chain rule in raster order, in its confidence
  order, and in the T groups of its parallel sampler;
* inpainting the centre 4×4 tokens: PSNR inside the box against the original and the tokenizer's
  reconstruction, exact-token accuracy, forward passes and wall time (and here, the speed ratios).

Prints Markdown (the tables in both model cards); ``--json`` writes the numbers.

    OMP_NUM_THREADS=1 python benchmarks/maskgit_vs_ar_quality.py [--sets artworks-test kodak] [--limit N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's museumtok first


def main(argv=None):
    from museumtok.eval.generative import ComparisonConfig, compare, markdown
    from museumtok import registry
    from museumtok.models.maskgit import MaskGIT

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maskgit", default="maskgit-vqvae-f8-k1024-g8", help="registry name (or checkpoint path)")
    ap.add_argument("--ar", default="ar-vqvae-f8-k1024-g8", help="registry name (or checkpoint path) of the causal model")
    ap.add_argument("--sets", nargs="+", default=list(ComparisonConfig.sets))
    ap.add_argument("--size", type=int, default=ComparisonConfig.size)
    ap.add_argument("--steps", type=int, default=ComparisonConfig.steps)
    ap.add_argument("--box", type=int, nargs=4, default=list(ComparisonConfig.box), metavar=("TOP", "LEFT", "H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    def load(name):  # a registry generator, or a freshly trained checkpoint folder
        if name in registry.names("generator", available_only=False):
            return registry.load(name)
        return MaskGIT.from_pretrained(str(name)).eval()

    mg, ar = load(a.maskgit), load(a.ar)
    if not ar.config.causal or mg.config.causal:
        raise SystemExit("--maskgit must be a bidirectional checkpoint and --ar a causal one")
    if mg.config.tokenizer != ar.config.tokenizer:
        raise SystemExit(f"the models model different tokens: {mg.config.tokenizer} vs {ar.config.tokenizer}")
    ae = registry.load(mg.config.tokenizer).model           # the VQ-VAE inside the frozen tokenizer
    crop = mg.config.grid[0] * ae.f
    cfg = ComparisonConfig(sets=tuple(a.sets), size=a.size, crop=crop, box=tuple(a.box), steps=a.steps,
                           seed=a.seed, limit=a.limit)
    res = compare(mg, ar, ae, cfg)
    print(f"{a.maskgit} vs {a.ar} over `{mg.config.tokenizer}` tokens, {a.threads} thread(s)\n")
    print(markdown(res, cfg))
    for s, r in res.items():  # speed: passes and wall time of the inpainting decoders, against MaskGIT T
        base = r["inpainting"][1]
        for row in r["inpainting"][2:]:
            print(f"{s}: {row['decoder']} / {base['decoder']}: {row['forward_passes'] / base['forward_passes']:.1f}× "
                  f"forward passes, {row['wall_s'] / max(base['wall_s'], 1e-9):.1f}× wall time")
    if a.json:
        Path(a.json).write_text(json.dumps({"config": vars(cfg), "result": res}, indent=1, default=list))


if __name__ == "__main__":
    main()
