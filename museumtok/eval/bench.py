"""`museumtok bench`: one table of every registry tokenizer and codec on Kodak and the held-out artworks (§9).

    python -m museumtok bench [--sets kodak artworks-test] [--names ...] [--limit N] [--out docs/bench]

The plan is read from the registry, never from a list here, so entries appear as engineers land them:

    registry ──▶ tokenizers × their M values ─────────────▶ evaluate_tokenizer ─┐
             └─▶ codecs ─┬─ at the bits each tokenizer spends (compress_at_bits) ├─▶ rows ─▶ bench.json
                         ├─ over a quality sweep                   measure_codec │          bench.md
                         └─ once per size when they have no setting              ┘          bench_rd.{html,png}

This module plans and measures (``evaluate_tokenizer`` and ``measure_codec`` from
:mod:`museumtok.eval.metrics`) and writes bench.json; :mod:`museumtok.eval.bench_report` renders the
Markdown, the README summary and the plots from that JSON; :mod:`museumtok.eval.errors` holds notebook
09's error analysis.

Every row is measured on the same centre crop a tokenizer sees (``working_image``) at the working
size S its M implies; a codec at a tokenizer's budget gets the same S×S crop and at most the same
bits (its file, headers included). An entry whose checkpoint (or published weights file) is missing is
listed as skipped, with the reason. Where the FID Inception or a CLIP model is on the machine
(``museumtok weights add``), each non-sweep row also gets FID, KID and CLIPScore
(:mod:`museumtok.metrics.distribution`); otherwise bench.md says "n/a: needs <file>", as for LPIPS.

Rows are cached in the JSON under a key (name, M, set, setting) with a fingerprint of everything that
determines them (the weights' :func:`museumtok.fingerprint.checkpoint_fingerprint`, constructor arguments,
the images' catalog sha256, the budget); a rerun recomputes only rows whose fingerprint changed. ``--fast`` (or ``MUSEUMTOK_FAST=1``)
uses 2 images per set and writes to ~/.cache/museumtok/bench-fast unless ``--out`` says otherwise.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from .. import registry
from ..data.catalog import named_set
from ..data.dataset import eval_batch
from ..data.images import to_uint8_grid
from ..fingerprint import checkpoint_fingerprint
from ..metrics import lpips_available
from ..paths import REPO_ROOT, cache_dir, fast_mode
from .bench_report import (JSON_NAME, MD_NAME, README_MARKERS, SUMMARY_NAME, mean_or_none, render_markdown,
                           render_summary, update_readme, write_plots)
from .metrics import evaluate_tokenizer, measure_codec

BENCH_VERSION = 1
DEFAULT_SETS = ("kodak", "artworks-test")
DEFAULT_OUT = REPO_ROOT / "docs" / "bench"
FAST_LIMIT = 2
#: quality settings of the codec sweeps (full run, fast run)
SWEEP_QUALITIES = (5, 10, 25, 50, 75, 90)
SWEEP_QUALITIES_FAST = (25, 75)
#: M values sampled for a tokenizer whose M is a continuous range (a slider in the app)
RANGE_M = (16, 32, 64, 128, 256, 512, 1024)


class BenchError(ValueError):
    """A bad bench request (unknown name or set); the message lists the valid choices."""


# ---------------------------------------------------------------------------------------- plan
@dataclass
class Job:
    name: str
    kind: str                      # "tokenizer" or "codec"
    set: str                       # evaluation set
    size: int                      # working image side S in pixels
    setting: str                   # "tokens", "budget", "quality" or "fixed"
    M: int | None = None           # token count (tokenizers)
    budget_bits: float | None = None  # codec: at most this many bits per image
    quality: int | None = None     # codec: sweep setting
    sources: list[str] = field(default_factory=list)  # which tokenizer rows set this budget

    @property
    def key(self) -> str:
        if self.setting == "tokens":
            s = "tokens"
        elif self.setting == "budget":
            s = f"budget={self.budget_bits:g}@{self.size}"
        elif self.setting == "quality":
            s = f"quality={self.quality}@{self.size}"
        else:
            s = f"fixed@{self.size}"
        return f"{self.name}|M={self.M if self.M is not None else '-'}|{self.set}|{s}"

    def label(self) -> str:
        if self.setting == "tokens":
            return f"{self.M} tokens"
        if self.setting == "budget":
            return f"≤ {self.budget_bits:.0f} bits ({'; '.join(self.sources)})"
        if self.setting == "quality":
            return f"quality {self.quality}"
        return "its own rate"


def tokenizer_Ms(entry: registry.RegistryEntry) -> list[int]:
    """The M values benchmarked: all of ``supported_M``, or a sample when M is a continuous range."""
    s = entry.supported_M
    if not entry.m_is_range:
        return list(s)
    picked = [m for m in RANGE_M if s[0] <= m <= s[-1]]
    return sorted(set(picked) | {s[0], s[-1]})


def codec_settings(codec) -> str:
    """How a codec is driven.

    "budget": it has ``compress_at_bits`` (run at each tokenizer's bits, and swept over quality);
    "quality": it takes a ``quality`` setting (swept); "fixed": one rate (e.g. a learned codec at one λ).
    """
    if hasattr(codec, "compress_at_bits"):
        return "budget"
    if "quality" in inspect.signature(codec.compress).parameters:
        return "quality"
    return "fixed"


def validate(names: Iterable[str] | None, sets: Iterable[str]) -> tuple[list[str], list[str]]:
    """Check names and sets before any work; raise :class:`BenchError` listing the valid ones."""
    known = [e.name for e in registry.entries() if e.kind in ("tokenizer", "codec")]   # generators make no images
    names = list(names) if names else known
    bad = [n for n in names if n not in known]
    if bad:
        raise BenchError(f"unknown registry name(s) {', '.join(map(repr, bad))}; known: {', '.join(known)}")
    sets = list(sets)
    for s in sets:
        try:
            named_set(s)
        except ValueError as err:
            raise BenchError(str(err)) from None
    if not sets:
        raise BenchError("no evaluation set given; choose kodak, artworks-test, artworks-val or artworks-train")
    return names, sets


def plan(names: list[str], sets: list[str], fast: bool = False) -> tuple[list[Job], list[dict]]:
    """All jobs for these registry names and sets, and the entries skipped (with the reason)."""
    jobs: list[Job] = []
    skipped: list[dict] = []
    budgets: dict[tuple[int, float], list[str]] = {}   # (size, bits) -> ["lloyd-patch-k256 M=64", ...]
    codecs = []
    for name in names:
        e = registry.get(name)
        if not e.available:
            skipped.append({"name": name, "reason": e.unavailable_reason})
            continue
        try:  # an entry that cannot even load is reported, not fatal to the table
            obj = registry.load(name)
        except Exception as err:
            skipped.append({"name": name, "reason": f"failed to load: {type(err).__name__}: {err}"})
            continue
        if e.kind == "codec":
            codecs.append((e, obj))
            continue
        tok = obj
        for M in tokenizer_Ms(e):
            size = tok.working_size(M)
            budgets.setdefault((size, M * math.log2(tok.K)), []).append(f"{name} M={M}")
            jobs += [Job(name, e.kind, s, size, "tokens", M=M) for s in sets]
    sizes = sorted({s for s, _ in budgets}) or [256]
    for e, codec in codecs:
        how = codec_settings(codec)
        for s in sets:
            if how == "budget":
                jobs += [Job(e.name, e.kind, s, size, "budget", budget_bits=b, sources=src)
                         for (size, b), src in sorted(budgets.items())]
            if how in ("budget", "quality"):
                qs = SWEEP_QUALITIES_FAST if fast else SWEEP_QUALITIES
                jobs += [Job(e.name, e.kind, s, size, "quality", quality=q) for size in sizes for q in qs]
            if how == "fixed":
                jobs += [Job(e.name, e.kind, s, size, "fixed") for size in sizes]
    return jobs, skipped


def fingerprint(job: Job, limit: int | None, _cache: dict = {}, dist: tuple[str, ...] = ()) -> str:  # noqa: B006 (memo)
    """sha256 of everything a row depends on: bench version, entry, checkpoint, images, setting, and which
    of FID/KID/CLIPScore could be measured (``dist``; left out when none, so rows measured without the
    weights are remeasured once they arrive)."""
    e = registry.get(job.name)
    if e.name not in _cache or _cache[e.name][0] != e:
        _cache[e.name] = (e, checkpoint_fingerprint(e))
    images = [x.sha256 for x in named_set(job.set)[:limit]]
    blob = {"v": BENCH_VERSION, "target": e.target, "kwargs": e.kwargs, "ckpt": _cache[e.name][1],
            "images": images, "key": job.key, "size": job.size, "limit": limit}
    if dist and job.setting != "quality":
        blob["dist"] = list(dist)
    if e.kind == "codec":
        import PIL

        blob["pillow"] = PIL.__version__
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------- measure
def _distribution(x: torch.Tensor, x_hat: torch.Tensor, entries: list, dist: dict | None) -> dict:
    """FID, KID and CLIPScore of one row when their weights are here (``dist`` holds the loaded extractors)."""
    if not dist:
        return {}
    from ..metrics.distribution import caption, distribution_metrics

    return distribution_metrics(x, x_hat, [caption(e) for e in entries], dist.get("fid"), dist.get("clipscore"))


def _tokenizer_row(job: Job, limit: int | None, dist: dict | None = None) -> dict:
    tok = registry.load(job.name)
    with torch.no_grad():  # warm up once so the first row's times are not the allocator's
        tok.decode_indices(tok.encode_tensor(torch.zeros(1, 3, tok.working_size(job.M), tok.working_size(job.M)), job.M), job.M)
    r = evaluate_tokenizer(tok, job.set, job.M, limit=limit, per_image=True)
    extra = {}
    if dist:   # reconstructions once more (only on a machine with the FID / CLIP weights)
        x, entries = eval_batch(job.set, r["size"], limit)
        with torch.no_grad():
            x_hat = tok.decode_indices(tok.encode_tensor(x, job.M), job.M).clamp(0, 1)
        extra = _distribution(x, to_uint8_grid(x_hat), entries, dist)
    bits_coded = r.get("bits_coded")
    bits = bits_coded if bits_coded is not None else r["bits"]
    return {"size": r["size"], "images": r["images"], "bits_raw": r["bits"], "bits_coded": bits_coded,
            "bits": bits, "bpp": bits / r["size"] ** 2, "psnr": r["psnr"], "ssim": r["ssim"],
            "ms_ssim": r["ms_ssim"], "lpips": r["lpips"], "usage": r["usage"], "perplexity": r["perplexity"],
            "encode_ms": r["encode_ms"], "decode_ms": r["decode_ms"], "K": tok.K,
            "per_image": r["per_image"], "note": "", **extra}


@torch.no_grad()
def _codec_row(job: Job, limit: int | None, images: dict, dist: dict | None = None) -> dict:
    codec = registry.load(job.name)
    key = (job.set, job.size)
    if key not in images:
        images[key] = eval_batch(job.set, job.size, limit)
    x, entries = images[key]
    pairs = [(e.id, xi) for e, xi in zip(entries, x)]
    if job.setting == "quality":
        pts = measure_codec(codec, pairs, quality=job.quality)
        per = [{"id": p["image"], "psnr": p["psnr"], "ssim": p["ssim"], "ms_ssim": p["ms_ssim"], "lpips": None,
                "bits": p["bits"]} for p in pts]
        bits = mean_or_none([p["bits"] for p in pts])
        return {"size": job.size, "images": len(entries), "bits_raw": None, "bits_coded": bits, "bits": bits,
                "bpp": bits / job.size**2, **{k: mean_or_none([p[k] for p in pts]) for k in ("psnr", "ssim", "ms_ssim")},
                "lpips": None, "usage": None, "perplexity": None,
                "encode_ms": mean_or_none([p["encode_ms"] for p in pts]),
                "decode_ms": mean_or_none([p["decode_ms"] for p in pts]),
                "per_image": per, "note": "LPIPS is not computed on quality sweeps"}
    pts = measure_codec(codec, pairs, budget_bits=job.budget_bits if job.setting == "budget" else None,
                        with_lpips=True, keep=True)
    per = [{"id": p["image"], **{k: p[k] for k in ("psnr", "ssim", "ms_ssim", "lpips", "bits", "quality")}} for p in pts]
    fits = sum(p["fits"] for p in pts)
    bits = mean_or_none([p["bits"] for p in per])
    note = ""
    if job.setting == "budget":
        note = f"fits the budget on {fits}/{len(per)} images"
        if fits < len(per):
            smallest = min(p["bits"] for p in per if p["bits"] > job.budget_bits)
            note += f"; on the rest even quality 1 overspends (smallest file {smallest} bits, headers included)"
        qs = [p["quality"] for p in per if p["quality"] is not None]
        if qs:
            note += f"; quality {min(qs)}–{max(qs)}"
    return {"size": job.size, "images": len(per), "bits_raw": None, "bits_coded": bits, "bits": bits,
            "bpp": bits / job.size**2, **{k: mean_or_none([p[k] for p in per]) for k in ("psnr", "ssim", "ms_ssim", "lpips")},
            "usage": None, "perplexity": None, "encode_ms": mean_or_none([p["encode_ms"] for p in pts]),
            "decode_ms": mean_or_none([p["decode_ms"] for p in pts]),
            "fits": fits, "budget_bits": job.budget_bits, "per_image": per, "note": note,
            **_distribution(x, to_uint8_grid(torch.stack([p["x_hat"] for p in pts])), entries, dist)}


def run_job(job: Job, limit: int | None, images: dict | None = None, dist: dict | None = None) -> dict:
    """Measure one row (``dist``: loaded FID / CLIP extractors, when their weights are here)."""
    t0 = time.perf_counter()
    body = (_tokenizer_row(job, limit, dist) if job.kind == "tokenizer"
            else _codec_row(job, limit, {} if images is None else images, dist))
    e = registry.get(job.name)
    return {"key": job.key, "name": job.name, "kind": job.kind, "chapter": e.chapter, "set": job.set, "M": job.M,
            "setting": job.label(), "setting_kind": job.setting, "quality": job.quality, **body,
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------- run
def distribution_extractors() -> tuple[dict, dict]:
    """(status as the JSON records it, {"fid": features, "clipscore": scorer} for those whose weights are here)."""
    from ..metrics.distribution import clip_scorer, distribution_status, inception_features

    status = distribution_status()
    loaded = {}
    for key, build in (("fid", inception_features), ("clipscore", clip_scorer)):
        if status[key]["available"]:
            try:
                loaded[key] = build()
            except Exception as err:   # a file that is present but unreadable: say so, keep the bench going
                status[key] = {"available": False, "reason": f"failed to load: {type(err).__name__}: {err}"}
    return status, loaded


@dataclass
class BenchResult:
    rows: list[dict]
    skipped: list[dict]
    computed: int
    cached: int
    errors: list[dict]
    out: Path
    wall_s: float
    meta: dict

    @property
    def json_path(self) -> Path:
        return self.out / JSON_NAME

    @property
    def md_path(self) -> Path:
        return self.out / MD_NAME


def load_previous(out: Path) -> dict:
    p = Path(out) / JSON_NAME
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _clean(v):
    """JSON has no inf/nan: PSNR of an exact reconstruction is written as null with a note."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def run_bench(sets: Iterable[str] = DEFAULT_SETS, names: Iterable[str] | None = None, limit: int | None = None,
              out: Path | str | None = None, fast: bool | None = None, progress: bool = True,
              plots: bool = True, command: str | None = None, readme: Path | str | None = None) -> BenchResult:
    """Plan, measure (reusing cached rows whose fingerprint is unchanged), write JSON, Markdown and plots.

    A full run into docs/bench also refreshes the table between :data:`README_MARKERS` in README.md
    when the README has them (``readme`` names another file to refresh instead).
    """
    t_start = time.perf_counter()
    fast = fast_mode() if fast is None else fast
    if fast and limit is None:
        limit = FAST_LIMIT
    names, sets = validate(names, sets)
    out = Path(out) if out is not None else (cache_dir("bench-fast") if fast else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    jobs, skipped = plan(names, sets, fast)
    prev = load_previous(out)
    old = {r["key"]: r for r in prev.get("rows", [])}
    live = {e.name for e in registry.entries() if e.available}
    planned = {j.key for j in jobs}
    # rows of other entries stay (a partial --names run must not erase them) unless the entry is gone
    kept = [r for k, r in old.items() if k not in planned and r["name"] in live]
    ok_lp, lp_reason = lpips_available()
    dist_status, dist = distribution_extractors()
    meta = {"version": BENCH_VERSION, "command": command or "python -m museumtok bench", "sets": sets, "limit": limit,
            "fast": fast, "lpips": {"available": ok_lp, "reason": lp_reason}, "distribution": dist_status,
            "host": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                     "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    rows: dict[str, dict] = {r["key"]: r for r in kept}
    computed = cached = 0
    errors: list[dict] = []
    images: dict = {}

    def save():
        doc = {**meta, "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "wall_s": time.perf_counter() - t_start,
               "compute_s": sum(r.get("seconds", 0.0) for r in rows.values()),
               "rows": [_clean(r) for r in rows.values()],
               "skipped": skipped, "errors": errors}
        _write_json(out / JSON_NAME, doc)

    from tqdm.auto import tqdm

    bar = tqdm(jobs, desc="bench", unit="row", disable=not progress, file=sys.stderr)
    for job in bar:
        fp = fingerprint(job, limit, dist=tuple(sorted(dist)))
        if job.key in old and old[job.key].get("fingerprint") == fp:
            rows[job.key] = {**old[job.key], "setting": job.label()}  # a budget's sources may have grown
            cached += 1
            continue
        bar.set_postfix_str(job.key[:60])
        try:
            row = run_job(job, limit, images, dist)
        except Exception as err:  # one broken entry must not stop the table; it is reported
            errors.append({"key": job.key, "name": job.name, "error": f"{type(err).__name__}: {err}"})
            continue
        row["fingerprint"] = fp
        rows[job.key] = row
        computed += 1
        save()
        if len(images) > 2:  # keep memory small: only the current set's crops
            images.pop(next(iter(images)))
    bar.close()
    save()
    result = BenchResult(list(rows.values()), skipped, computed, cached, errors, out,
                         time.perf_counter() - t_start, meta)
    doc = json.loads(result.json_path.read_text())
    result.md_path.write_text(render_markdown(doc))
    (out / SUMMARY_NAME).write_text(render_summary(doc))
    if readme is None and not fast and out.resolve() == DEFAULT_OUT.resolve():
        readme = REPO_ROOT / "README.md"
    if readme is not None:
        update_readme(Path(readme), render_summary(doc))
    if plots:
        write_plots(doc, out)
    return result


__all__ = ["BenchError", "BenchResult", "Job", "run_bench", "run_job", "plan", "validate", "fingerprint", "tokenizer_Ms",
           "codec_settings", "distribution_extractors", "load_previous", "DEFAULT_SETS", "DEFAULT_OUT", "README_MARKERS",
           "SUMMARY_NAME"]
