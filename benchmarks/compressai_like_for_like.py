"""Our scale hyperprior against CompressAI's own ``ScaleHyperprior`` class, like for like (issue 21).

    .venv/bin/python benchmarks/compressai_like_for_like.py                 # 15 CPU-minutes each, λ of quality 3
    .venv/bin/python benchmarks/compressai_like_for_like.py --minutes 1 --eval-limit 2   # a quick look

Both networks are trained by the same trainer (``museumtok train hyperprior`` and ``museumtok train
compressai-hyperprior``: :mod:`museumtok.train.neural_codecs` on the project's harness) from scratch, side by
side, one torch thread each, with everything else equal: N = 64 / M = 96 channels, the same seed and so the
same random crops of the training artworks, batch, learning rates and schedule, the same λ, and the same
budget of *CPU* minutes (``--clock cpu``: the two runs share the machine, so each is stopped by its own
process's CPU time, not by the wall clock). CompressAI's entropy bottleneck also gets its aux optimizer
(the ``quantiles``, lr 1e-3), as CompressAI's example trainer does.

Then ``museumtok eval rd --set kodak --extra <both folders>`` measures both with real bitstreams beside
the bundled ``hyperprior-q*`` curve and JPEG, in one table. One λ gives one point per model, so besides
bpp and PSNR the table reports the training objective on Kodak, J = bpp + λ·255²·MSE (lower is better),
the figure of merit at that λ. Writes ``docs/rd/like_for_like.{json,md}``. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("hyperprior", "compressai-hyperprior")
FOLDERS = {"hyperprior": "museumtok-ScaleHyperprior", "compressai-hyperprior": "compressai-ScaleHyperprior"}


def train_both(out: Path, minutes: float, quality: int, seed: int, max_steps: int | None) -> dict[str, Path]:
    """Start both trainings at once (one thread each), wait for both; their logs go to ``out/<model>.log``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs, folders = {}, {}
    for m in MODELS:
        folders[m] = out / FOLDERS[m]
        cmd = [sys.executable, "-m", "museumtok", "train", m, "--quality", str(quality), "--max-minutes", str(minutes),
               "--clock", "cpu", "--threads", "1", "--seed", str(seed), "--eval-limit", "1", "--out", str(folders[m])]
        if max_steps:
            cmd += ["--max-steps", str(max_steps)]
        procs[m] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(out / f"{m}.log", "w"), stderr=subprocess.STDOUT)
        print("started:", " ".join(cmd[1:]), flush=True)
    for m, p in procs.items():
        if p.wait():
            raise SystemExit(f"{m} failed (exit {p.returncode}); see {out / f'{m}.log'}")
    return folders


def objective(point: dict, lmbda: float) -> float:
    """Mean over images of bpp + λ·255²·MSE, MSE on [0, 1] pixels recovered from each image's PSNR."""
    rows = point["images"]
    return sum(r["bpp"] + lmbda * 255**2 * 10 ** (-r["psnr"] / 10) for r in rows) / len(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="CPU minutes of training for each model")
    ap.add_argument("--quality", type=int, default=3, help="CompressAI quality index whose λ both train at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="also stop at this many steps (quick looks)")
    ap.add_argument("--eval-limit", type=int, default=None, help="only the first N Kodak images")
    ap.add_argument("--runs", type=Path, default=Path.home() / ".cache" / "museumtok" / "like-for-like")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "rd")
    ap.add_argument("--skip-training", action="store_true", help="evaluate the folders of an earlier run")
    args = ap.parse_args(argv)

    from museumtok.codecs.learned.base import QUALITY_LAMBDAS
    from museumtok.eval.rd import run_rd, summary_table

    lmbda = QUALITY_LAMBDAS[args.quality]
    args.runs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    folders = ({m: args.runs / FOLDERS[m] for m in MODELS} if args.skip_training
               else train_both(args.runs, args.minutes, args.quality, args.seed, args.max_steps))
    train_s = time.time() - t0
    res = run_rd("kodak", args.eval_limit, codecs=["hyperprior"], tokenizers=[], extra=[str(f) for f in folders.values()])
    rows = []
    for m, folder in folders.items():
        facts = json.loads((folder / "training.json").read_text())
        point = res["curves"][folder.name]["points"][0]
        summary = next(r for r in summary_table(res) if r["codec"] == folder.name)
        rows.append({"model": m, "class": {"hyperprior": "museumtok.codecs.learned.ScaleHyperprior",
                                           "compressai-hyperprior": "compressai.models.ScaleHyperprior"}[m],
                     "steps": facts["lineage"][-1]["steps"], "cpu_min": round(facts["cpu_time_s"] / 60, 2),
                     "wall_min": round(facts["wall_time_s"] / 60, 2), "stopped_by": facts["stopped_by"],
                     "bpp": round(point["bpp"], 4), "psnr": round(point["psnr"], 3), "ms_ssim": round(point["ms_ssim"], 4),
                     "J": round(objective(point, lmbda), 4), "dB_vs_jpeg": summary["Δ dB vs jpeg"],
                     "enc_ms": round(point["encode_ms"], 1), "dec_ms": round(point["decode_ms"], 1),
                     "command": facts["command"], "hardware": facts["hardware"]})
    bundled = [{"codec": r["codec"], "bpp": round(r["bpp"], 4), "psnr": round(r["PSNR dB"], 3),
                "dB_vs_jpeg": r["Δ dB vs jpeg"]} for r in summary_table(res) if r["codec"].startswith("hyperprior-")]
    doc = {"command": "benchmarks/compressai_like_for_like.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "lmbda": lmbda, "quality": args.quality, "set": "kodak", "images": len(res["images"]),
           "train_wall_s": round(train_s), "rows": rows, "bundled_hyperprior": bundled}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "like_for_like.json").write_text(json.dumps(doc, indent=1))
    fmt = lambda v: "n/a" if v is None else (f"{v:+.2f}" if isinstance(v, float) else str(v))   # noqa: E731
    md = [f"Command: `.venv/bin/python {doc['command'].strip()}`. λ = {lmbda} (quality {args.quality}), "
          f"Kodak ({doc['images']} images, real bitstreams), both trained from scratch side by side, one thread each.",
          "", "| model | class | steps | CPU min | bpp | PSNR dB | MS-SSIM | J = bpp + λ·255²·MSE | Δ dB vs JPEG at that rate | enc ms | dec ms |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | `{r['class']}` | {r['steps']} | {r['cpu_min']} | {r['bpp']} | {r['psnr']} | {r['ms_ssim']} | "
           f"{r['J']} | {fmt(r['dB_vs_jpeg'])} | {r['enc_ms']} | {r['dec_ms']} |" for r in rows]
    md += ["", "Training commands (each row's `training.json`): "
           + "; ".join(f"{r['model']}: `{r['command']}` on {r['hardware']}" for r in rows) + "."]
    md += ["", "Bundled `hyperprior-q*` (hours of chained CPU training) on the same images, for scale: "
           + "; ".join(f"{b['codec']} {b['bpp']} bpp / {b['psnr']} dB ({fmt(b['dB_vs_jpeg'])} dB vs JPEG)" for b in bundled)]
    (args.out / "like_for_like.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
