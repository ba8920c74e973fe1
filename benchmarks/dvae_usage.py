"""Why does the dVAE use a fifth of its codebook? One short run per suspect, side by side (issue 21).

    .venv/bin/python benchmarks/dvae_usage.py                      # 6 variants × 300 steps, ~25 CPU-minutes
    .venv/bin/python benchmarks/dvae_usage.py --steps 60 --only base usage-1e-2

Every variant trains ``museumtok train dvae``'s model from the same seed on the same crops for the same
steps (the τ schedule compressed into them, as the bundled run's), changing one thing:

    base            the bundled checkpoint's settings: soft Gumbel-softmax, λ_KL = 3e-4, τ 1 → 1/16
    kl-x10          λ_KL = 3e-3: a stronger pull of every position's posterior towards uniform
    straight-through  hard one-hot samples in the forward pass
    tau-end-0.5     τ annealed only to 0.5 (a softer sample at the end)
    usage-1e-3 / usage-1e-2  + KL(batch-average posterior ‖ uniform), weights 1e-3 / 1e-2 (not in DALL·E)

and reports held-out codebook usage, perplexity and PSNR (artworks-val, 128 px, M = 256: 2 560 tokens)
every ``--eval-every`` steps. Writes docs/dvae/usage.json and usage.md. Nothing is asserted: this is an
experiment, and its reading is in the model card of dvae-f8-k1024 and the README.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VARIANTS = {
    "base": {},
    "kl-x10": {"kl_weight": 3e-3},
    "straight-through": {"hard": True},
    "tau-end-0.5": {"tau_end": 0.5},
    "usage-1e-3": {"usage_weight": 1e-3},
    "usage-1e-2": {"usage_weight": 1e-2},
}


def main(argv=None) -> int:
    from museumtok.data.dataset import eval_batch
    from museumtok.train.autoencoder import train_images
    from museumtok.train.dvae import DVAETrainConfig, compare_settings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--only", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "dvae")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = DVAETrainConfig(steps=a.steps, kl_weight=3e-4, eval_every=a.eval_every, save_every=10**9,
                          log_every=max(1, a.steps // 10), max_minutes=0)
    images, _ = train_images()
    x_val, _ = eval_batch(cfg.eval_set, cfg.eval_size)
    t0 = time.time()
    res = compare_settings(cfg, {k: VARIANTS[k] for k in a.only}, images, x_val, Path(tempfile.mkdtemp()))
    rows = []
    for name, r in res.items():
        rows.append({"variant": name, "overrides": VARIANTS[name], "steps": r["summary"]["steps"],
                     "wall_s": round(r["summary"]["wall_time_s"], 1),
                     "psnr": round(r["final"]["psnr"], 2), "usage": round(r["final"]["usage"], 3),
                     "perplexity": round(r["final"]["perplexity"], 1), "dead_codes": r["final"]["dead_codes"],
                     "relaxed_psnr": round(r["relaxed_psnr"], 2),
                     "curve": [{k: round(float(e[k]), 3) for k in ("step", "psnr", "usage", "perplexity")}
                               for e in r["eval"]]})
    a.out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "benchmarks/dvae_usage.py " + " ".join(argv or sys.argv[1:]), "set": cfg.eval_set,
           "size": cfg.eval_size, "tokens": int(x_val.shape[0] * (cfg.eval_size // cfg.f) ** 2),
           "K": cfg.codebook_size, "wall_s": round(time.time() - t0), "rows": rows}
    (a.out / "usage.json").write_text(json.dumps(doc, indent=1))
    lines = [f"dVAE f8, K = {cfg.codebook_size}, {a.steps} steps of batch {cfg.batch_size} per variant; "
             f"held-out {cfg.eval_set} at {cfg.eval_size} px ({doc['tokens']} tokens). "
             f"Command: `.venv/bin/python {doc['command'].strip()}`.", "",
             "| variant | change | PSNR (argmax) dB | PSNR (training sample) dB | usage | perplexity | dead codes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ch = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in r["overrides"].items()) or "—"
        lines.append(f"| {r['variant']} | {ch} | {r['psnr']} | {r['relaxed_psnr']} | {r['usage']:.1%} | "
                     f"{r['perplexity']} | {r['dead_codes']} |")
    (a.out / "usage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
