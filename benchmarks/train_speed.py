"""Training throughput of the VQ-VAE and hyperprior trainers, variant by variant, side by side (issue 21).

    .venv/bin/python benchmarks/train_speed.py                       # both models, every variant, 3 rounds
    .venv/bin/python benchmarks/train_speed.py --models vqvae --rounds 5 --steps 6
    .venv/bin/python benchmarks/train_speed.py --compile             # also torch.compile (minutes to compile)

One optimizer step = draw a batch the way the trainer does + forward + loss + backward + Adam, on the real
training artworks, at the trainers' default sizes (VQ-VAE f8: batch 16 of 64 px; hyperprior q3: batch 8 of
128 px). The variants change one thing each against the baseline (the trainers' settings before this
benchmark existed):

    data    pil     a fresh PIL resize + crop of a ≤768 px artwork per sample (train/autoencoder.py)
            pool    crops cut from uint8 tensors kept at a few scales (train/neural_codecs.py CropSampler)
    layout  nchw / channels_last (NHWC: oneDNN's preferred convolution layout on CPU)
    threads 1 / 2  torch intra-op threads
    bf16            bfloat16 autocast of the step (the hyperprior trainer's default where the CPU computes bf16
                    natively, ``neural_codecs.use_bf16``: AVX512-BF16 or AMX; emulated on AVX2 it is many times
                    slower, so those rows are left out there)
    compile         torch.compile(model) (inductor), only with --compile

Rounds interleave the variants (A B C … A B C …) so that load from other processes hits each alike;
the table reports the median ms per step and the speed-up over the baseline measured in the same rounds.
Nothing here is asserted: the trainers' defaults follow the numbers (see the README's "Training speed").
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def pil_batches(batch: int, crop: int):
    from museumtok.train.autoencoder import batch_for_step, train_images

    images, _ = train_images()
    step = [0]

    def draw():
        step[0] += 1
        return batch_for_step(images, step[0], batch, crop, 3.0, 0)
    return draw


def pool_batches(batch: int, crop: int, scales: tuple[int, ...]):
    from museumtok.train.neural_codecs import CropSampler

    sampler = CropSampler(crop, scales, seed=0)
    return lambda: sampler.batch(batch)


def vqvae_model():
    from museumtok.models.vqvae import VQVAE, VQVAEConfig

    m = VQVAE(VQVAEConfig())
    m.quantizer.initted.fill_(True)                       # no k-means on the first timed batch
    return m, (lambda out, x: out.loss)


def hyperprior_model():
    from museumtok.codecs.learned import ScaleHyperprior
    from museumtok.train.neural_codecs import rd_loss

    m = ScaleHyperprior(N=64, M=96, lmbda=0.0067)
    return m, (lambda out, x: rd_loss({**out, "x_hat": out["x_hat"].float()}, x, 0.0067)["loss"])   # as the trainer


MODELS = {
    # name: (model factory, batch, crop, pyramid scales of the pooled sampler)
    "vqvae": (vqvae_model, 16, 64, (192, 256, 384, 768)),
    "hyperprior": (hyperprior_model, 8, 128, (256, 384, 512, 768)),
}


class Variant:
    def __init__(self, name: str, data: str, channels_last: bool, threads: int, compile: bool = False,
                 bf16: bool = False):
        self.name, self.data, self.channels_last, self.threads, self.compile = name, data, channels_last, threads, compile
        self.bf16 = bf16


def variants(baseline_data: str, with_compile: bool) -> list[Variant]:
    from museumtok.train.neural_codecs import use_bf16

    other = "pool" if baseline_data == "pil" else "pil"
    vs = [Variant("baseline", baseline_data, False, 1),
          Variant("channels_last", baseline_data, True, 1),
          Variant(f"data={other}", other, False, 1),
          Variant(f"channels_last + data={other}", other, True, 1),
          Variant("channels_last + 2 threads", baseline_data, True, 2)]
    native_bf16 = use_bf16(None)
    if native_bf16:
        vs.append(Variant("channels_last + bf16", baseline_data, True, 1, bf16=True))
    if with_compile:
        vs.append(Variant("channels_last + compile", baseline_data, True, 1, compile=True))
        if native_bf16:
            vs.append(Variant("channels_last + bf16 + compile", baseline_data, True, 1, compile=True, bf16=True))
    return vs


def setup(model_name: str, v: Variant, draws: dict):
    factory, batch, crop, scales = MODELS[model_name]
    torch.manual_seed(0)
    model, loss_fn = factory()
    model.train()
    if v.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if v.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if v.data not in draws:
        draws[v.data] = pil_batches(batch, crop) if v.data == "pil" else pool_batches(batch, crop, scales)
    draw = draws[v.data]

    def step():
        x = draw()
        if v.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16):
            loss = loss_fn(run(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(model_name: str, rounds: int, steps: int, with_compile: bool) -> list[dict]:
    # the VQ-VAE trainer drew PIL crops, the hyperprior trainer pooled ones: each baseline is its trainer's
    baseline_data = "pil" if model_name == "vqvae" else "pool"
    vs = variants(baseline_data, with_compile)
    draws: dict = {}
    steppers = {}
    for v in vs:
        torch.set_num_threads(v.threads)
        steppers[v.name] = setup(model_name, v, draws)
        for _ in range(2 if not v.compile else 3):        # warm-up (oneDNN primitives, compilation)
            steppers[v.name]()
    ms: dict[str, list[float]] = {v.name: [] for v in vs}
    for r in range(rounds):
        order = vs[r % len(vs):] + vs[: r % len(vs)]      # rotate who goes first
        for v in order:
            torch.set_num_threads(v.threads)
            t0 = time.perf_counter()
            for _ in range(steps):
                steppers[v.name]()
            ms[v.name].append((time.perf_counter() - t0) * 1e3 / steps)
        print(f"  {model_name} round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in ms.items()),
              flush=True)
    torch.set_num_threads(1)
    base = statistics.median(ms["baseline"])
    return [{"model": model_name, "variant": v.name, "data": v.data, "channels_last": v.channels_last,
             "threads": v.threads, "compile": v.compile, "bf16": v.bf16, "ms_per_step": round(statistics.median(ms[v.name]), 1),
             "speedup": round(base / statistics.median(ms[v.name]), 2),
             "speedup_per_thread": round(base / statistics.median(ms[v.name]) / v.threads, 2)} for v in vs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="steps per variant per round")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    random.seed(0)
    rows = []
    for m in a.models:
        rows += measure(m, a.rounds, a.steps, a.compile)
    print("\n| model | variant | ms / step | speed-up | per thread |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['ms_per_step']} | {r['speedup']}× | {r['speedup_per_thread']}× |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
