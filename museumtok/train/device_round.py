"""One GPU round: continue ``hyperprior-q1…q4`` and ``vqvae-f16-k1024`` side by side on one CUDA device inside a
wall-clock budget, then measure the results on this machine and keep each only where it beats the bundled one.

    # on the GPU machine, one call (five processes share the GPU; each ends by its own --max-minutes):
    python -m museumtok.train.device_round run --minutes 6.5 --out "$OUT"
    # back here: unpack, measure every result the way its bundled card was measured, print the comparison
    .venv/bin/python -m museumtok.train.device_round finish DIR_WITH_THE_TARS --into /tmp/round

Getting there (the device tool copies the checkout, at most 64 MiB, and nothing beside it):

    .venv/bin/python -m museumtok.train.device_round stage      # train + val artworks into .devdata/ (24 MB)
    # then move aside, for that one call, what the round does not read (docs/, tests/, notebooks/ and the other
    # checkpoints: the repository is ~112 MB), carry .devdata, and set MUSEUMTOK_DATA=$PWD/.devdata there.

``run`` needs the package, the five bundled checkpoints and the training + validation artworks
(``MUSEUMTOK_DATA``): the codecs skip their closing bitstream check (``--eval-limit 0``; no entropy coder needed
there) and the tokenizer closes on artworks-val, so the GPU machine needs neither Kodak nor the test split.
What comes back is one ``.tar`` per checkpoint (the device tool returns at most 8 files) and ``logs.txt``.

``finish`` re-measures each result here, as every bundled card is measured (Kodak at native size, real bytes,
for a codec: :func:`museumtok.eval.rd.evaluate_codec`; artworks-val, artworks-test and Kodak at every M for the
tokenizer), rewrites the card's metrics (:func:`museumtok.cards.refresh_metrics`) and prints, per checkpoint,
bundled against new with the keep rule:

- a codec: Kodak's RD cost J = bpp + λ·255²·MSE (MSE from the mean PSNR, λ from its config) must fall;
- the tokenizer: artworks-val at M = 256 (the set its earlier runs were chosen on) must gain PSNR without
  losing codebook usage (the issue's targets: ≥ 21 dB and ≥ 95 % usage on artworks-test).

It copies nothing into ``data/checkpoints``: that stays a reviewed step (``--keep`` does it for the winners).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

QUALITIES = (1, 2, 3, 4)      # hyperprior-q*
FACTORIZED = (2, 4)           # factorized-q* (the bundled ones)
TOKENIZER = "vqvae-f16-k1024"


@dataclass(frozen=True)
class Job:
    name: str            # the checkpoint it continues (and the folder it writes under the run's root)
    argv: list[str]      # `museumtok train …` arguments
    threads: int         # CPU threads of its process (data and the closing evaluation)


def plan(minutes: float, root: Path, checkpoints: Path, qualities=QUALITIES, factorized=FACTORIZED,
         tokenizer: bool = True, device: str = "cuda") -> list[Job]:
    """The round's jobs. Codecs: 256 px crops (the hyper-latent of a 128 px crop is 2×2), batch 16, peak lr 2e-4
    cosine-decayed over the time budget (the CPU chain's last setting), bf16 autocast as on the CPU. Tokenizer:
    256 px crops (its M = 256 working size) from the pooled sampler, batch 32, lr 2e-4 with the usage term at 0.03
    (its last CPU run), an lr schedule over time (``--schedule progress``). The factorized codecs (no
    hyper-latent, so 128 px crops, a quarter of a codec job's pixels) come along where the GPU has room."""
    jobs = []
    for q in qualities:
        name = f"hyperprior-q{q}"
        jobs.append(Job(name, [
            "hyperprior", "--quality", str(q), "--device", device, "--clock", "wall", "--max-minutes", f"{minutes:g}",
            "--crop", "256", "--batch", "16", "--lr", "2e-4", "--seed", str(110 + q), "--threads", "2",
            "--bf16", "true", "--init", str(checkpoints / name), "--eval-limit", "0",
            "--out", str(root / name)], 2))
    for q in factorized:
        name = f"factorized-q{q}"
        jobs.append(Job(name, [
            "factorized", "--quality", str(q), "--device", device, "--clock", "wall", "--max-minutes", f"{minutes:g}",
            "--crop", "128", "--batch", "16", "--lr", "2e-4", "--seed", str(120 + q), "--threads", "1",
            "--bf16", "true", "--init", str(checkpoints / name), "--eval-limit", "0", "--out", str(root / name)], 1))
    if tokenizer:
        jobs.append(Job(TOKENIZER, [
            "vqvae", "--f", "16", "--crop", "256", "--batch-size", "32", "--data", "pool", "--schedule", "progress",
            "--steps", "200000", "--max-minutes", f"{minutes:g}", "--lr", "2e-4", "--warmup", "100",
            "--usage-weight", "0.03", "--seed", "16", "--device", device, "--threads", "4",
            "--eval-size", "256", "--eval-every", "1000", "--save-every", "5000", "--log-every", "200",
            "--final-eval-sets", "artworks-val", "--init", str(checkpoints / TOKENIZER),
            "--out", str(root / TOKENIZER), "--run-dir", str(root / f"{TOKENIZER}-run")], 4))
    return jobs


def _job(argv: list[str]) -> int:
    """One job's process: fast GPU settings, then ``museumtok train …`` (its card records that command)."""
    import torch

    torch.backends.cudnn.benchmark = True                  # fixed crop shapes: let cuDNN pick its kernels once
    torch.backends.cuda.matmul.allow_tf32 = True           # fp32 parts (the tokenizer) on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    from ..cli import main

    sys.argv = ["museumtok", "train", *argv]
    return main(["train", *argv])


def run(minutes: float, out: Path, root: Path, checkpoints: Path, grace_minutes: float = 1.5, **kw) -> dict:
    """Start every job at once, wait (each stops itself after ``minutes``; any still running ``grace_minutes``
    later is stopped), then pack each written checkpoint into ``out/<name>.tar`` and every log into ``logs.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(minutes, root, checkpoints, **kw)
    procs = {}
    t0 = time.time()
    for j in jobs:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(j.threads)}
        log = open(root / f"{j.name}.log", "w")
        procs[j.name] = (subprocess.Popen([sys.executable, "-m", "museumtok.train.device_round", "job", *j.argv],
                                          stdout=log, stderr=subprocess.STDOUT, env=env), log)
        print(f"started {j.name}: museumtok train {' '.join(j.argv)}", flush=True)
    smi = None
    if kw.get("device", "cuda") == "cuda" and shutil.which("nvidia-smi"):    # GPU load every 30 s, for the notes
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv",
                                "-l", "30"], stdout=open(root / "gpu.log", "w"), stderr=subprocess.STDOUT)
    deadline = t0 + 60 * (minutes + grace_minutes)
    while any(p.poll() is None for p, _ in procs.values()) and time.time() < deadline:
        time.sleep(5)
    for name, (p, log) in procs.items():
        if p.poll() is None:
            print(f"{name}: still running at the deadline, stopped", flush=True)
            p.kill()
        p.wait()
        log.close()
    if smi is not None:
        smi.terminate()
        smi.wait()
    summary = {"minutes": minutes, "wall_s": round(time.time() - t0, 1), "jobs": {}}
    with open(out / "logs.txt", "w") as fh:
        for j in jobs:
            p, _ = procs[j.name]
            folder = root / j.name
            ok = (folder / "model.safetensors").is_file()
            summary["jobs"][j.name] = {"returncode": p.returncode, "checkpoint": ok}
            if ok:
                with tarfile.open(out / f"{j.name}.tar", "w") as tar:
                    tar.add(folder, arcname=j.name)
            fh.write(f"===== {j.name} (rc {p.returncode}) museumtok train {' '.join(j.argv)}\n")
            fh.write((root / f"{j.name}.log").read_text(errors="replace"))
        if (root / "gpu.log").exists():
            fh.write("===== nvidia-smi\n" + (root / "gpu.log").read_text(errors="replace"))
        fh.write("===== summary\n" + json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1), flush=True)
    return summary


# ---- back here ------------------------------------------------------------------------------------
def rd_cost(bpp: float, psnr: float, lmbda: float) -> float:
    """J = bpp + λ·255²·MSE with the MSE of the mean PSNR (how the CPU chain's runs were kept)."""
    return bpp + lmbda * 255**2 * 10 ** (-psnr / 10)


def measure_codec(folder: Path, limit: int | None = None) -> list[dict]:
    from ..checkpoint import load_folder
    from ..eval.rd import evaluate_codec, rd_images

    res = evaluate_codec(load_folder(folder), rd_images("kodak", limit))
    return [{"set": "kodak", "images": len(res["images"]), "bpp (real bytes)": res["bpp"],
             "bpp (estimated)": res["bpp_estimated"], "PSNR dB": res["psnr"], "MS-SSIM": res["ms_ssim"],
             "encode ms": res["encode_ms"], "decode ms": res["decode_ms"]}]


def measure_tokenizer(folder: Path) -> list[dict]:
    from ..checkpoint import load_folder
    from ..models.vqvae import VQVAE
    from ..tokenizers.autoencoder import VQVAETokenizer
    from .autoencoder import final_metrics

    tok = load_folder(folder, wrappers={VQVAE: VQVAETokenizer})
    tok.name = TOKENIZER
    return final_metrics(tok, ("artworks-val", "artworks-test", "kodak"))


def compare(name: str, old: list[dict], new: list[dict], lmbda: float | None = None) -> dict:
    """Bundled against new under the round's keep rule (module docstring)."""
    if name.startswith(("hyperprior", "factorized")):
        (o,), (n,) = ([r for r in rows if r["set"] == "kodak"] for rows in (old, new))
        jo, jn = (rd_cost(r["bpp (real bytes)"], r["PSNR dB"], lmbda) for r in (o, n))
        return {"name": name, "old": f"{o['bpp (real bytes)']:.4f} bpp / {o['PSNR dB']:.3f} dB, J {jo:.4f}",
                "new": f"{n['bpp (real bytes)']:.4f} bpp / {n['PSNR dB']:.3f} dB, J {jn:.4f}", "keep": jn < jo,
                "rule": f"Kodak's RD cost J = bpp + λ·255²·MSE (λ = {lmbda:g}, MSE from the mean PSNR) fell"}
    pick = lambda rows, s: next(r for r in rows if r["set"] == s and r["M"] == 256)  # noqa: E731
    o, n = pick(old, "artworks-val"), pick(new, "artworks-val")
    return {"name": name, "old": f"val M=256 {o['psnr']:.2f} dB, usage {o['usage']:.1%}",
            "new": f"val M=256 {n['psnr']:.2f} dB, usage {n['usage']:.1%}",
            "keep": n["psnr"] > o["psnr"] and n["usage"] >= o["usage"],
            "rule": "artworks-val at M = 256 gained PSNR without losing codebook usage"}


def carry_notes(old_card: Path, new_card: Path, note: str) -> None:
    """Give the new card the bundled card's ``## Notes`` with ``note`` on top (older entries renamed so that
    "The last run of this chain" is always the newest)."""
    old = old_card.read_text(encoding="utf-8")
    notes = old.split("## Notes\n", 1)[1].split("\n## ", 1)[0].strip("\n") if "## Notes\n" in old else ""
    notes = notes.replace("- The run before it (", "- An earlier run (").replace(
        "- The last run of this chain (", "- The run before it (").replace("the command above;", "an earlier command;")
    card = new_card.read_text(encoding="utf-8").rstrip("\n")
    card = card.split("\n## Notes\n")[0].rstrip("\n")
    new_card.write_text(card + "\n\n## Notes\n\n" + note + ("\n" + notes if notes else "") + "\n", encoding="utf-8")


def finish(src: Path, into: Path, checkpoints: Path, keep: bool = False, limit: int | None = None) -> list[dict]:
    """Unpack every ``<name>.tar`` of ``src`` into ``into``, measure it here, compare with ``checkpoints/<name>``
    and (``keep``) copy the winners over it, notes carried. ``limit``: Kodak images per codec (tests only: the
    bundled metrics are on all 24)."""
    from ..cards import hardware, refresh_metrics

    into.mkdir(parents=True, exist_ok=True)
    rows = []
    for tar in sorted(Path(src).glob("*.tar")):
        with tarfile.open(tar) as t:
            t.extractall(into, filter="data")
        name = tar.stem
        folder, bundled = into / name, checkpoints / name
        facts = json.loads((folder / "training.json").read_text())
        metrics = measure_tokenizer(folder) if name == TOKENIZER else measure_codec(folder, limit)   # minutes here
        refresh_metrics(folder, metrics, f"Trained on {facts.get('hardware')}; the metrics above were measured "
                                         f"afterwards on {hardware()} (`python -m museumtok.train.device_round finish`).")
        old = json.loads((bundled / "training.json").read_text())["metrics"]
        lmbda = json.loads((folder / "config.json").read_text()).get("lmbda")
        row = compare(name, old, metrics, lmbda)
        if keep and row["keep"]:
            carry_notes(bundled / "README.md", folder / "README.md",
                        f"- The last run of this chain ({facts['wall_time_s'] / 60:.1f} min on {facts.get('hardware')}, "
                        f"the command above, `python -m museumtok.train.device_round run`) continues the bundled "
                        f"checkpoint: {row['old']} before, {row['new']} now (measured here). Kept because {row['rule']}.")
            for f in folder.iterdir():
                if f.is_file():
                    shutil.copy2(f, bundled / f.name)
            row["copied"] = str(bundled)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def stage(dest: Path) -> dict:
    """Copy the training and validation artworks (what ``run`` reads) into ``dest/artworks/``; their size."""
    from ..data.catalog import load_catalog

    (dest / "artworks").mkdir(parents=True, exist_ok=True)
    n = size = 0
    for split in ("train", "val"):
        for e in load_catalog(split=split, collection="artworks"):
            target = dest / "artworks" / e.file
            shutil.copy2(e.find(verify=True), target)
            n, size = n + 1, size + target.stat().st_size
    return {"folder": str(dest), "images": n, "MB": round(size / 1e6, 1)}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(q) for q in text.split(",") if q.strip())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["job"]:
        return _job(argv[1:])
    from ..paths import CHECKPOINT_DIR

    ap = argparse.ArgumentParser(prog="python -m museumtok.train.device_round", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="on the GPU machine: train every job side by side, pack the results")
    r.add_argument("--minutes", type=float, default=6.5, help="training wall minutes of each job")
    r.add_argument("--out", type=Path, required=True, help="where the tars and logs.txt go ($OUT on the device)")
    r.add_argument("--root", type=Path, default=Path("/tmp/device_round"), help="working folder of the jobs")
    r.add_argument("--device", default="cuda")
    r.add_argument("--grace", type=float, default=1.5, help="minutes after --minutes before a job still running is stopped")
    r.add_argument("--qualities", default="1,2,3,4", help="hyperprior qualities ('' for none)")
    r.add_argument("--factorized", default="2,4", help="factorized qualities ('' for none)")
    r.add_argument("--no-tokenizer", action="store_true")
    st = sub.add_parser("stage", help="here: copy the artworks the round reads into a folder inside the checkout")
    st.add_argument("--dest", type=Path, default=Path(".devdata"))
    f = sub.add_parser("finish", help="here: unpack, measure, compare with the bundled checkpoints")
    f.add_argument("src", type=Path, help="folder holding the .tar files that came back")
    f.add_argument("--into", type=Path, default=Path("/tmp/device_round_home"))
    f.add_argument("--keep", action="store_true", help="copy each result that passes its keep rule into data/checkpoints")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        s = run(a.minutes, a.out, a.root, CHECKPOINT_DIR, grace_minutes=a.grace, device=a.device, tokenizer=not a.no_tokenizer,
                qualities=_ints(a.qualities), factorized=_ints(a.factorized))
        return 0 if all(j["checkpoint"] for j in s["jobs"].values()) else 1
    if a.cmd == "stage":
        print(json.dumps(stage(a.dest)))
        return 0
    finish(a.src, a.into, CHECKPOINT_DIR, keep=a.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
