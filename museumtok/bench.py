"""`museumtok bench`: one table of every registry tokenizer and codec on Kodak and the held-out artworks (§9).

    python -m museumtok bench [--sets kodak artworks-test] [--names ...] [--limit N] [--out docs/bench]

The plan is read from the registry, never from a list here, so entries appear as engineers land them:

    registry ──▶ tokenizers × their M values ─────────────▶ evaluate_tokenizer ─┐
             └─▶ codecs ─┬─ at the bits each tokenizer spends (compress_at_bits) ├─▶ rows ─▶ bench.json
                         ├─ over a quality sweep (codec_rd_points)               │          bench.md
                         └─ once per size when they have no setting              ┘          bench_rd.{html,png}

Every row is measured on the same centre crop a tokenizer sees (``working_image``) at the working
size S its M implies; a codec at a tokenizer's budget gets the same S×S crop and at most the same
bits (its file, headers included). An entry whose checkpoint (or published weights file) is missing is
listed as skipped, with the reason. Where the FID Inception or a CLIP model is on the machine
(``museumtok weights add``), each non-sweep row also gets FID, KID and CLIPScore
(:mod:`museumtok.metrics.distribution`); otherwise bench.md says "n/a: needs <file>", as for LPIPS.

Rows are cached in the JSON under a key (name, M, set, setting) with a fingerprint of everything that
determines them (checkpoint files' sha256, constructor arguments, the images' catalog sha256, the
budget); a rerun recomputes only rows whose fingerprint changed. ``--fast`` (or ``MUSEUMTOK_FAST=1``)
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

from . import registry
from .data.catalog import named_set, sha256_file
from .data.dataset import eval_batch
from .data.images import to_uint8_grid
from .evaluate import codec_rd_points, evaluate_tokenizer, image_metrics
from .metrics import codebook_stats, lpips_available
from .metrics.content import difficulty_reasons, image_statistics
from .paths import REPO_ROOT, cache_dir, fast_mode

BENCH_VERSION = 1
DEFAULT_SETS = ("kodak", "artworks-test")
DEFAULT_OUT = REPO_ROOT / "docs" / "bench"
FAST_LIMIT = 2
#: quality settings of the codec sweeps (full run, fast run)
SWEEP_QUALITIES = (5, 10, 25, 50, 75, 90)
SWEEP_QUALITIES_FAST = (25, 75)
#: M values sampled for a tokenizer whose M is a continuous range (a slider in the app)
RANGE_M = (16, 32, 64, 128, 256, 512, 1024)
JSON_NAME, MD_NAME, HTML_NAME, PNG_NAME = "bench.json", "bench.md", "bench_rd.html", "bench_rd.png"
SUMMARY_NAME = "summary.md"
#: a README holding these two lines gets the summary table between them on every full run
README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


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


def checkpoint_hash(entry: registry.RegistryEntry) -> str | None:
    """sha256 over the checkpoint's weight and config files (the model card is not hashed); for published
    weights, over their file names (which carry a sha256 prefix) and sizes."""
    p = entry.checkpoint_path
    if p is None and entry.weights:
        from . import weights as W

        h = hashlib.sha256()
        for key in entry.weights:
            f = W.locate(key)
            files = sorted(x for x in f.iterdir() if x.is_file()) if f is not None and f.is_dir() else [f]
            for x in files:
                h.update(f"{key}:{x.name if x else None}:{x.stat().st_size if x else 0}".encode())
        return h.hexdigest()
    if p is None:
        return None
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors") and f.name != "training.json":
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


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
    known = [e.name for e in registry.entries()]
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
        _cache[e.name] = (e, checkpoint_hash(e))
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
def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(sum(xs) / len(xs)) if xs else None


def _distribution(x: torch.Tensor, x_hat: torch.Tensor, entries: list, dist: dict | None) -> dict:
    """FID, KID and CLIPScore of one row when their weights are here (``dist`` holds the loaded extractors)."""
    if not dist:
        return {}
    from .metrics.distribution import caption, distribution_metrics

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
    if job.setting == "quality":
        pts = codec_rd_points(codec, x, [job.quality])
        per = [{"id": entries[p["image"]].id, "psnr": p["psnr"], "ssim": p["ssim"], "ms_ssim": p["ms_ssim"],
                "lpips": None, "bits": p["bits"]} for p in pts]
        bits = _mean([p["bits"] for p in pts])
        return {"size": job.size, "images": len(entries), "bits_raw": None, "bits_coded": bits, "bits": bits,
                "bpp": bits / job.size**2, **{k: _mean([p[k] for p in pts]) for k in ("psnr", "ssim", "ms_ssim")},
                "lpips": None, "usage": None, "perplexity": None,
                "encode_ms": _mean([p["encode_ms"] for p in pts]), "decode_ms": _mean([p["decode_ms"] for p in pts]),
                "per_image": per, "note": "LPIPS is not computed on quality sweeps"}
    per, enc_ms, dec_ms, fits, notes, x_hats = [], [], [], 0, [], []
    for xi, e in zip(x, entries):
        if job.setting == "budget":
            res = codec.compress_at_bits(xi, job.budget_bits)
            enc, ok = res.encoded, res.fits
            if not ok:
                notes.append(res.note())
        else:
            t0 = time.perf_counter()
            enc = codec.compress(xi)
            enc.encode_ms = 1e3 * (time.perf_counter() - t0)
            ok = True
        t1 = time.perf_counter()
        x_hat = codec.decompress(enc)
        dec_ms.append(1e3 * (time.perf_counter() - t1))
        x_hats.append(x_hat)
        enc_ms.append(enc.encode_ms)
        fits += ok
        m = image_metrics(xi[None], x_hat[None])
        per.append({"id": e.id, **{k: (None if v is None else float(v)) for k, v in m.items()},
                    "bits": enc.bits, "quality": enc.params.get("quality")})
    bits = _mean([p["bits"] for p in per])
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
            "bpp": bits / job.size**2, **{k: _mean([p[k] for p in per]) for k in ("psnr", "ssim", "ms_ssim", "lpips")},
            "usage": None, "perplexity": None, "encode_ms": _mean(enc_ms), "decode_ms": _mean(dec_ms),
            "fits": fits, "budget_bits": job.budget_bits, "per_image": per, "note": note,
            **_distribution(x, to_uint8_grid(torch.stack(x_hats)), entries, dist)}


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
    from .metrics.distribution import clip_scorer, distribution_status, inception_features

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


# ----------------------------------------------------------------------------------- rendering
def _fmt(v, nd=2, none="—"):
    if v is None:
        return none
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _sort_key(r: dict):
    order = {"tokens": 0, "budget": 1, "fixed": 2, "quality": 3}
    return (r["size"], r.get("bits") or 0, order.get(r.get("setting_kind"), 9), r["name"])


def table_rows(doc: dict, set_name: str, sweeps: bool = False) -> list[dict]:
    rows = [r for r in doc["rows"] if r["set"] == set_name and (r.get("setting_kind") == "quality") == sweeps]
    return sorted(rows, key=_sort_key)


def render_markdown(doc: dict) -> str:
    """The bench as Markdown: one table per set (tokenizers and codecs at their bits), then the sweeps."""
    lp = doc["lpips"]
    lp_cell = "—" if lp["available"] else "n/a[^lpips]"
    lines = [
        "# museumtok bench",
        "",
        f"Generated {doc.get('generated', '?')} by `{doc['command']}`"
        + (f" (fast mode, {doc['limit']} images per set)" if doc.get("fast") else "")
        + (f" with --limit {doc['limit']}" if doc.get("limit") and not doc.get("fast") else "") + ".",
        f"Host: {doc['host']['platform']}, {doc['host']['cpus']} CPUs, torch {doc['host']['torch']} "
        f"with {doc['host']['torch_threads']} thread(s); measuring all rows took {doc.get('compute_s', 0):.0f} s "
        "(sum over rows; a rerun measures only rows whose checkpoint, images or setting changed). "
        "Regenerate with `make bench`.",
        "",
        "Each row is the mean over the set's images, each a centre square crop resized to the working size "
        "S (px). **bits raw** = M·log2 K (fixed-length token indices); **bits coded** = entropy-coded bits "
        "(a tokenizer's own prior when it has one, a codec's real file size with headers); **bpp** divides "
        "the coded bits when present, the raw bits otherwise, by S². Codecs are run at most at the bits a "
        "tokenizer spends on the same crop (`compress_at_bits`). **usage** = share of the K codes used on "
        "the set, **perplexity** = 2^H(p̂) (K under uniform use, 1 under collapse). Times are per image, "
        "one CPU thread. Where a codec cannot fit a budget even at its lowest quality, its row shows the "
        "smallest file it can write (bits above the budget) and a note says on how many images.",
        "",
    ]
    head = ("| method | M | setting | S | bits raw | bits coded | bpp | PSNR dB | SSIM | MS-SSIM | LPIPS | "
            "usage | perplexity | enc ms | dec ms |")
    sep = "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"
    notes: list[str] = []
    for s in doc["sets"]:
        rs = table_rows(doc, s)
        if not rs:
            continue
        lines += [f"## {s} ({rs[0]['images']} images)", "", head, sep]
        for r in rs:
            mark = ""
            if r.get("note") and r.get("setting_kind") in ("budget", "fixed"):
                notes.append(f"{r['name']} on {s}, {r['setting']}: {r['note']}")
                mark = f"[^{len(notes)}]"
            lines.append("| " + " | ".join([
                f"{r['name']}{mark}", _fmt(r.get("M")), r["setting"], _fmt(r["size"]),
                _fmt(r.get("bits_raw"), 0), _fmt(r.get("bits_coded"), 0), _fmt(r.get("bpp"), 4),
                _fmt(r.get("psnr")), _fmt(r.get("ssim"), 4), _fmt(r.get("ms_ssim"), 4),
                _fmt(r.get("lpips"), 4, lp_cell), _fmt(r.get("usage"), 3), _fmt(r.get("perplexity"), 1),
                _fmt(r.get("encode_ms"), 1), _fmt(r.get("decode_ms"), 1)]) + " |")
        lines.append("")
    lines += render_distribution(doc)
    sweep_sets = [s for s in doc["sets"] if table_rows(doc, s, sweeps=True)]
    if sweep_sets:
        lines += ["## Codec quality sweeps", "", "| set | codec | S | quality | bpp | PSNR dB | SSIM | MS-SSIM | enc ms | dec ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in sweep_sets:
            for r in table_rows(doc, s, sweeps=True):
                lines.append(f"| {s} | {r['name']} | {r['size']} | {r.get('quality')} | {_fmt(r['bpp'], 4)} | "
                             f"{_fmt(r['psnr'])} | {_fmt(r['ssim'], 4)} | {_fmt(r['ms_ssim'], 4)} | "
                             f"{_fmt(r['encode_ms'], 1)} | {_fmt(r['decode_ms'], 1)} |")
        lines.append("")
    lines += ["## Notes", ""]
    if not lp["available"]:
        lines.append(f"[^lpips]: LPIPS n/a: {lp['reason']}.")
    for i, n in enumerate(notes, 1):
        lines.append(f"[^{i}]: {n}.")
    for sk in doc.get("skipped", []):
        lines.append(f"- skipped {sk['name']}: {sk['reason']}.")
    for er in doc.get("errors", []):
        lines.append(f"- error in {er['key']}: {er['error']}.")
    return "\n".join(lines) + "\n"


def render_distribution(doc: dict) -> list[str]:
    """The FID / KID / CLIPScore section: a table per set when measured, else the "n/a: needs <file>" lines."""
    st = doc.get("distribution") or {}
    fid, clip = st.get("fid", {}), st.get("clipscore", {})
    lines = ["## Distribution and text metrics (FID, KID, CLIPScore)", ""]
    if not fid.get("available"):
        lines.append(f"- FID / KID n/a: {fid.get('reason', 'not measured by this bench version')}.")
    if not clip.get("available"):
        lines.append(f"- CLIPScore n/a: {clip.get('reason', 'not measured by this bench version')}.")
    measured = [r for r in doc["rows"] if any(r.get(k) is not None for k in ("fid", "kid", "clipscore"))]
    if measured:
        lines += ["", "Originals against reconstructions of each set (FID, KID: Inception pool features; lower is "
                  "closer); CLIPScore = 100·max(cos, 0) of the CLIP embeddings of the image and its catalog title and "
                  "artist (artworks only), for the reconstruction and for the original. On a few dozen images FID "
                  "is biased upwards (a 2048-d Gaussian fitted to N < 2048 points): compare it only within one set "
                  "and size; KID is unbiased.", ""]
        for s in doc["sets"]:
            rs = [r for r in table_rows(doc, s) if r in measured]
            if not rs:
                continue
            lines += [f"### {s}", "", "| method | M | setting | S | FID | KID ×10³ | CLIPScore | CLIPScore (original) |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in rs:
                kid = None if r.get("kid") is None else 1e3 * r["kid"]
                lines.append(f"| {r['name']} | {_fmt(r.get('M'))} | {r['setting']} | {r['size']} | {_fmt(r.get('fid'))} | "
                             f"{_fmt(kid)} | {_fmt(r.get('clipscore'))} | {_fmt(r.get('clipscore_original'))} |")
            lines.append("")
    lines.append("")
    return lines


def render_summary(doc: dict) -> str:
    """A README-sized table: one line per tokenizer and M, and per codec at each token budget, sets as columns."""
    sets = [s for s in doc["sets"] if any(r["set"] == s for r in doc["rows"])]
    lines: dict[tuple, dict] = {}
    for r in doc["rows"]:
        if r.get("setting_kind") == "quality":
            continue
        k = (r["size"], r["name"], r.get("M"), r.get("budget_bits"))
        lines.setdefault(k, {})[r["set"]] = r
    head = ["method", "M / budget", "S px", "bits"] + [f"bpp · PSNR dB · MS-SSIM ({s})" for s in sets] + ["encode ms"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]

    def order(item):
        (size, name, M, budget), by_set = item
        r = next(iter(by_set.values()))
        return (size, r.get("budget_bits") or r.get("bits_raw") or 0, r["kind"] != "tokenizer", name)

    for (size, name, M, budget), by_set in sorted(lines.items(), key=order):
        r0 = next(iter(by_set.values()))
        setting = f"M = {M}" if M is not None else (f"≤ {budget:.0f} bits" if budget else r0["setting"])
        bits = _fmt(r0.get("bits_coded") if r0.get("bits_coded") is not None and M is not None else r0.get("bits_raw"), 0)
        if M is None:
            bits = "file"
        cells = []
        for s in sets:
            r = by_set.get(s)
            if r is None:
                cells.append("—")
                continue
            star = "*" if r.get("setting_kind") == "budget" and r.get("fits", r["images"]) < r["images"] else ""
            cells.append(f"{_fmt(r['bpp'], 3)}{star} · {_fmt(r['psnr'])} · {_fmt(r['ms_ssim'], 3)}")
        enc = _fmt(_mean([r.get("encode_ms") for r in by_set.values()]), 1)
        out.append(f"| {name} | {setting} | {size} | {bits} | " + " | ".join(cells) + f" | {enc} |")
    n = ", ".join(f"{s} {next(r['images'] for r in doc['rows'] if r['set'] == s)} images" for s in sets)
    out += ["", f"Means over {n}; S = working image side (centre crop). bits: M·log2 K for tokenizers "
            "(entropy-coded when the tokenizer has a prior); codecs: real files, headers included, at most the "
            "tokenizer's bits on the same crop. * the codec cannot fit that budget on some images even at "
            "quality 1, so its bpp is above the budget. Full table: docs/bench/bench.md; "
            f"regenerate with `{doc['command']}`."]
    return "\n".join(out) + "\n"


def update_readme(path: Path, table: str) -> bool:
    """Replace the text between :data:`README_MARKERS` in ``path`` by ``table``; False when absent."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    a, b = README_MARKERS
    i, j = text.find(a), text.find(b)
    if i < 0 or j < i:
        return False
    new = text[: i + len(a)] + "\n" + table + text[j:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def _rd_groups(doc: dict, s: str) -> list[tuple[str, object, list[dict], bool]]:
    """One set's rows with a PSNR, grouped as the RD plots draw them: (name, tag, rows by bpp, sweep?);
    a quality sweep is grouped by working size, the rest by setting kind."""
    groups: dict[tuple, list] = {}
    for r in doc["rows"]:
        if r["set"] != s or r.get("psnr") is None:
            continue
        g = (r["name"], r["size"]) if r.get("setting_kind") == "quality" else (r["name"], r.get("setting_kind"))
        groups.setdefault(g, []).append(r)
    out = []
    for (name, tag), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r["bpp"])
        out.append((name, tag, rs, rs[0].get("setting_kind") == "quality"))
    return out


def rd_figure(doc: dict):
    """bpp against PSNR per set: tokenizers as markers, codecs at tokenizer budgets, codec sweeps as lines."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = [s for s in doc["sets"] if any(r["set"] == s for r in doc["rows"])]
    fig = make_subplots(rows=1, cols=max(1, len(sets)), subplot_titles=sets, shared_yaxes=True)
    symbols = ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon"]
    for c, s in enumerate(sets, 1):
        for i, (name, tag, rs, sweep) in enumerate(_rd_groups(doc, s)):
            label = f"{name} sweep {tag} px" if sweep else (name if tag == "tokens" else f"{name} at token bits")
            fig.add_trace(go.Scatter(
                x=[r["bpp"] for r in rs], y=[r["psnr"] for r in rs], name=label, legendgroup=label, showlegend=c == 1,
                mode="lines+markers" if sweep else "markers",
                marker={"symbol": symbols[i % len(symbols)], "size": 6 if sweep else 11},
                line={"dash": "dot"} if sweep else None,
                text=[f"{r['name']}<br>{r['setting']}<br>S={r['size']} px" for r in rs],
                hovertemplate="%{text}<br>bpp %{x:.4f}<br>PSNR %{y:.2f} dB<extra></extra>"), row=1, col=c)
        fig.update_xaxes(type="log", title_text="bits per pixel", row=1, col=c)
    fig.update_yaxes(title_text="PSNR (dB)", row=1, col=1)
    fig.update_layout(height=480, title="museumtok bench: rate against distortion",
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def write_plots(doc: dict, out: Path) -> list[Path]:
    """bench_rd.html (plotly) and bench_rd.png (kaleido if installed, otherwise matplotlib)."""
    out = Path(out)
    fig = rd_figure(doc)
    html = out / HTML_NAME
    fig.write_html(html, include_plotlyjs="cdn", full_html=True)
    png = out / PNG_NAME
    try:
        import kaleido  # noqa: F401

        fig.write_image(png, width=1200, height=520)
    except Exception:
        _matplotlib_png(doc, png)
    return [html, png]


def _matplotlib_png(doc: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in doc["sets"] if any(r["set"] == s for r in doc["rows"])]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(6.5 * max(1, len(sets)), 5), sharey=True, squeeze=False)
    markers = "osD^vP*Xh"
    names = sorted({r["name"] for r in doc["rows"]})
    colour = {n: f"C{i % 10}" for i, n in enumerate(names)}
    dashes = {}
    for ax, s in zip(axes[0], sets):
        groups = _rd_groups(doc, s)
        rows = [r for _, _, rs, _ in groups for r in rs]
        for i, (name, tag, rs, sweep) in enumerate(groups):
            label = f"{name} sweep {tag}px" if sweep else (name if tag == "tokens" else f"{name} at token bits")
            ls = dashes.setdefault(tag, [":", "--", "-.", "-"][len(dashes) % 4]) if sweep else "none"
            ax.plot([r["bpp"] for r in rs], [r["psnr"] for r in rs], ls=ls, color=colour[name],
                    marker=markers[names.index(name) % len(markers)] if not sweep else ".",
                    ms=3 if sweep else (9 if tag == "tokens" else 6), label=label,
                    alpha=0.55 if sweep else 0.95, mfc="none" if tag == "budget" else None)
        for r in rows:
            if r.get("setting_kind") == "tokens":
                ax.annotate(f"M={r['M']}", (r["bpp"], r["psnr"]), textcoords="offset points", xytext=(7, -3),
                            fontsize=6, color=colour[r["name"]])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5) if t <= max(r["bpp"] for r in rows) * 1.2])
        ax.set_xlabel("bits per pixel")
        ax.set_title(s)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ error analysis
def error_analysis(name: str, set_name: str = "artworks-test", M: int | None = None,
                   limit: int | None = None) -> list[dict]:
    """Per-image PSNR of one tokenizer on a set, worst first, with content statistics and a reason.

    The reason is the content statistic (:mod:`museumtok.metrics.content`, on the same working crop
    the tokenizer saw) that, weighted by its rank correlation with PSNR over the set, pushes the
    image furthest towards a low (or, for the better half, a high) PSNR.
    """
    tok = registry.load(name)
    M = tok.check_M(M)
    r = evaluate_tokenizer(tok, set_name, M, limit=limit, per_image=True)
    x, entries = eval_batch(set_name, tok.working_size(M), limit)
    stats = [image_statistics(xi) for xi in x]
    reasons = difficulty_reasons(stats, [p["psnr"] for p in r["per_image"]])
    rows = [{"id": e.id, "title": e.title, "artist": e.artist, "psnr": p["psnr"], "ssim": p["ssim"],
             **st, "reason": why, "index": i}
            for i, (e, p, st, why) in enumerate(zip(entries, r["per_image"], stats, reasons))]
    return sorted(rows, key=lambda d: d["psnr"])


def token_patch_mse(x: torch.Tensor, x_hat: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """MSE of each token's patch, (h, w), for a (3, S, S) image and its reconstruction on an h×w grid."""
    from einops import rearrange

    h, w = grid
    d = (x.double() - x_hat.double()) ** 2
    return rearrange(d, "c (h p1) (w p2) -> h w (c p1 p2)", h=h, w=w).mean(-1)


@torch.no_grad()
def code_patches(tok, x: torch.Tensor, M: int, code: int, max_n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """§9.3 step 2: the working-image patches a token id stands for, and what it decodes to.

    Encodes the (N, 3, S, S) batch ``x`` at ``M`` and returns (patches (n, 3, p, p) of the first
    ``max_n`` positions coded ``code``, their decoded patches (n, 3, p, p)), cut with the
    tokenizer's own token boxes (working pixels).
    """
    idx = tok.encode_tensor(x, M)                                  # (N, h, w) or (N, M)
    x_hat = tok.decode_indices(idx, M).clamp(0, 1)                 # (N, 3, S, S)
    boxes = tok.token_boxes(tuple(idx.shape[1:]), x.shape[-1]).round().long()  # (M, 4) xyxy
    flat = idx.reshape(len(x), -1)                                 # (N, M)
    hits = torch.nonzero(flat == code)[:max_n]                     # (n, 2): image, position
    orig, dec = [], []
    for i, pos in hits.tolist():
        x0, y0, x1, y1 = boxes[pos].tolist()
        orig.append(x[i, :, y0:y1, x0:x1])
        dec.append(x_hat[i, :, y0:y1, x0:x1])
    if not orig:
        return torch.empty(0, 3, 1, 1), torch.empty(0, 3, 1, 1)
    return torch.stack(orig), torch.stack(dec)


@torch.no_grad()
def token_influence(tok, indices: torch.Tensor, M: int, position: int, new_code: int | None = None) -> tuple[torch.Tensor, float]:
    """How far one token reaches in the decoded image.

    Changes the token at ``position`` of one image's ``indices`` (h, w) or (M,) to ``new_code``
    (default: the next code) and decodes both. Returns the (S, S) map of the mean absolute RGB change
    and the share of the total change that falls outside the token's own box: 0 for a patch
    codebook (each token decodes to its own patch), above 0 for a convolutional decoder whose
    receptive field spreads a token over its neighbours.
    """
    idx = indices.unsqueeze(0).clone()                                   # (1, h, w) or (1, M)
    flat = idx.view(1, -1)
    new_code = (int(flat[0, position]) + 1) % tok.K if new_code is None else int(new_code)
    a = tok.decode_indices(idx, M)[0]                                    # (3, S, S)
    flat[0, position] = new_code
    b = tok.decode_indices(idx, M)[0]
    change = (a - b).abs().mean(0)                                       # (S, S)
    x0, y0, x1, y1 = tok.token_boxes(tuple(indices.shape), change.shape[-1])[position].round().long().tolist()
    outside = change.clone()
    outside[y0:y1, x0:x1] = 0
    total = float(change.double().sum())
    return change, float(outside.double().sum()) / total if total > 0 else 0.0


def collapse_check(indices: torch.Tensor, K: int, top: int = 10, max_top_share: float = 0.5,
                   min_perplexity_ratio: float = 0.05) -> dict:
    """§9.3 step 4: does a small group of codes take most tokens? (codebook collapse)

    Collapse is flagged when the ``top`` most frequent codes take more than ``max_top_share`` of all
    tokens, or the perplexity is below ``min_perplexity_ratio`` × K.
    """
    st = codebook_stats(indices, K)
    counts = torch.bincount(indices.reshape(-1).long(), minlength=K)[:K]
    top_share = float(counts.sort(descending=True).values[:top].sum()) / max(1, st.n)
    collapsed = top_share > max_top_share or st.perplexity < min_perplexity_ratio * K
    return {**st.as_dict(), "top": top, "top_share": top_share, "perplexity_ratio": st.perplexity / K,
            "collapsed": collapsed}


__all__ = ["BenchError", "BenchResult", "Job", "run_bench", "plan", "validate", "render_markdown", "render_distribution",
           "distribution_extractors", "write_plots",
           "rd_figure", "error_analysis", "token_patch_mse", "code_patches", "token_influence", "collapse_check", "tokenizer_Ms", "checkpoint_hash",
           "DEFAULT_SETS", "DEFAULT_OUT"]
