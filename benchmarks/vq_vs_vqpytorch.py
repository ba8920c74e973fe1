"""museumtok's VectorQuantizer against vector-quantize-pytorch's VectorQuantize, side by side.

Same shapes (B=32 images of 16×16 = 256 latent vectors, D=64, K=1024), same codebook, training mode,
forward + backward of (mean z_q² + auxiliary loss), interleaved repeats in one process; prints the
median time of each and the ratio ours / theirs (goal ≤ 1.0). Two configurations:

* ``ema``: EMA codebook (γ = 0.99), straight-through estimator, commitment weight 0.25 on both sides
  (vector-quantize-pytorch with ``rotation_trick=False`` so both use the plain STE).
* ``loss``: codebook learned by the codebook loss (theirs: ``learnable_codebook=True, ema_update=False``).

    python benchmarks/vq_vs_vqpytorch.py [--repeats 30] [--device cpu|cuda] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's museumtok first


def build(config: str, D: int, K: int, device: str):
    from vector_quantize_pytorch import VectorQuantize

    from museumtok.quantize import VectorQuantizer

    ema = config == "ema"
    ours = VectorQuantizer(D, K, beta=0.25, ema=ema, decay=0.99).to(device).train()
    kw = dict(decay=0.99) if ema else dict(learnable_codebook=True, ema_update=False)
    theirs = VectorQuantize(dim=D, codebook_size=K, accept_image_fmap=True, rotation_trick=False,
                            commitment_weight=0.25, **kw).to(device).train()
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.codebook[None])
    return ours, theirs


def step_ours(q, z):
    out = q(z)
    (out.z_q.pow(2).mean() + out.loss).backward()


def step_theirs(q, z):
    z_q, _, aux = q(z)
    (z_q.pow(2).mean() + aux.sum()).backward()


def timeit(fn, q, z, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(q, z)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--side", type=int, default=16, help="latent grid side (side² vectors per image)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--codebook-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, S, D, K, dev = args.batch, args.side, args.dim, args.codebook_size, args.device
    print(f"B={B}, {S * S} vectors of D={D} per image, K={K}, device={dev}, threads={args.threads}, "
          f"repeats={args.repeats}, torch {torch.__version__}")
    import vector_quantize_pytorch  # noqa: F401
    from importlib.metadata import version
    print(f"vector-quantize-pytorch {version('vector-quantize-pytorch')}")
    print(f"{'config':8s} {'museumtok ms':>13s} {'vq-pytorch ms':>14s} {'ratio':>7s}")
    results = {}
    for config in ("ema", "loss"):
        ours, theirs = build(config, D, K, dev)
        z = torch.randn(B, D, S, S, device=dev, requires_grad=True)
        for _ in range(args.warmup):
            step_ours(ours, z)
            step_theirs(theirs, z)
        t_ours, t_theirs = [], []
        for i in range(args.repeats):  # interleaved, alternating who goes first
            pair = [(step_ours, ours, t_ours), (step_theirs, theirs, t_theirs)]
            for fn, q, acc in (pair if i % 2 == 0 else pair[::-1]):
                acc.append(timeit(fn, q, z, dev))
        a, b = statistics.median(t_ours) * 1e3, statistics.median(t_theirs) * 1e3
        results[config] = (a, b, a / b)
        print(f"{config:8s} {a:13.2f} {b:14.2f} {a / b:7.2f}")
    return results


if __name__ == "__main__":
    main()
