"""The review's §7.2 multi-term objective against the VQ-VAE paper's loss, on the same model, crops and steps.

    .venv/bin/python benchmarks/multi_term_objective.py                 # 2 runs × 400 steps, ~8 CPU-minutes
    .venv/bin/python benchmarks/multi_term_objective.py --steps 40      # a quick look

Both runs continue the bundled ``vqvae-f8-k1024`` with ``museumtok train vqvae`` (same seed, same crops, same
learning rate), changing only the objective:

    paper        ‖x − x̂‖² + β·commitment (the VQ-VAE paper's eq. 3, with EMA codes): what the checkpoint was trained on
    multi-term   w·L_rate + L1 + λ2·(1 − MS-SSIM) + β·commitment (§7.2, ``--objective multi-term``): L_rate is the
                 expected bits per pixel of the tokens under the codebook's running usage, on a soft assignment

then measures both, and the starting checkpoint, on held-out images at M = 256 (128 px): PSNR, MS-SSIM,
codebook usage and the tokens' entropy-coded size under each model's own unigram prior (refitted on the
training split, as ``museumtok prior fit`` does). Writes docs/multi_term/objective.{json,md}. Nothing is
asserted: this is an experiment, read in the README's §7 section.
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

ROOT = Path(__file__).resolve().parents[1]


def measure(folder: Path, name: str, sets, M: int) -> list[dict]:
    from museumtok.eval.metrics import evaluate_tokenizer
    from museumtok.tokenizers.autoencoder import VQVAETokenizer
    from museumtok.tokenizers.prior import save_tokenizer_prior

    tok = VQVAETokenizer.from_pretrained(folder)
    tok.name = name
    if not (folder / "prior.json").exists():
        save_tokenizer_prior(tok, folder)
    tok.load_priors(folder)
    rows = []
    for s in sets:
        r = evaluate_tokenizer(tok, s, M)
        rows.append({"model": name, "set": s, "M": M, "images": r["images"], "psnr": round(r["psnr"], 2),
                     "ms_ssim": round(r["ms_ssim"], 4), "usage": round(r["usage"], 3),
                     "perplexity": round(r["perplexity"], 1),
                     "coded_bits_per_token": round(r["bits_coded"] / M, 3)})
    return rows


def main(argv=None) -> int:
    from museumtok.cards import markdown_table
    from museumtok.paths import CHECKPOINT_DIR
    from museumtok.train.vqvae import VQVAETrainConfig, train

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rate-weight", type=float, default=0.1, help="w of L_rate (bits per pixel)")
    p.add_argument("--lambda-perc", type=float, default=0.2, help="λ2 of 1 − MS-SSIM")
    p.add_argument("--sets", nargs="+", default=["artworks-val", "artworks-test"])
    p.add_argument("--work", type=Path, default=None, help="run folders (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "multi_term")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    work = a.work or Path(tempfile.mkdtemp(prefix="multi-term-"))
    base = dict(steps=a.steps, lr=a.lr, warmup=max(1, a.steps // 20), init="vqvae-f8-k1024", eval_every=10**9,
                save_every=10**9, log_every=max(1, a.steps // 20), max_minutes=0, final_eval_sets=("artworks-val",),
                resume=False, seed=1)
    variants = {"paper": dict(objective="paper"),
                "multi-term": dict(objective="multi-term", rate_weight=a.rate_weight, lambda_perc=a.lambda_perc,
                                   lambda_rec=1.0, rec="l1", lambda_gan=0.0, lambda_text=0.0)}
    t0 = time.time()
    rows = measure(CHECKPOINT_DIR / "vqvae-f8-k1024", "vqvae-f8-k1024 (start)", a.sets, 256)
    runs = {}
    for name, over in variants.items():
        kw = {k: v for k, v in over.items() if k == "objective"}
        cfg = VQVAETrainConfig(**base, **kw, run_dir=str(work / f"{name}-run"), out=str(work / name), name=name)
        if name == "multi-term":
            from dataclasses import replace
            cfg.multi = replace(cfg.multi, **{k: v for k, v in over.items() if k != "objective"})
        t = time.process_time()
        folder = train(cfg, command=f"benchmarks/multi_term_objective.py ({name})")
        runs[name] = {"cpu_s": round(time.process_time() - t, 1), "config": json.loads(json.dumps(
            {"objective": cfg.objective, **({"multi": cfg.multi.__dict__} if name == "multi-term" else {})}))}
        rows += measure(Path(folder), name, a.sets, 256)
    a.out.mkdir(parents=True, exist_ok=True)
    cmd = "benchmarks/multi_term_objective.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = {"command": cmd.strip(), "steps": a.steps, "lr": a.lr, "runs": runs, "rows": rows,
           "wall_s": round(time.time() - t0)}
    (a.out / "objective.json").write_text(json.dumps(doc, indent=1))
    lines = [f"Both runs continue `vqvae-f8-k1024` for {a.steps} steps of batch 16 (64 px crops, Adam lr {a.lr:g}, "
             f"seed 1), one torch thread. multi-term = {a.rate_weight:g}·L_rate + L1 + {a.lambda_perc:g}·(1 − MS-SSIM) "
             f"+ β·commitment; paper = MSE + β·commitment. Held-out images at 128 px (M = 256). Coded bits: the "
             f"tokens range-coded under each model's unigram prior fitted on the training split. "
             f"Command: `.venv/bin/python {doc['command']}`.", "",
             markdown_table([{"model": r["model"], "set": r["set"], "PSNR dB": r["psnr"], "MS-SSIM": r["ms_ssim"],
                              "usage": f"{r['usage']:.1%}", "perplexity": r["perplexity"],
                              "coded bits / token": r["coded_bits_per_token"]} for r in rows], floatfmt="g")]
    (a.out / "objective.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
