"""Rate–distortion evaluation with real bitstreams (§3.1–3.2, §5.1–5.3), and the Bjøntegaard metrics.

    museumtok eval rd --set kodak            # every bundled learned codec, JPEG and WebP sweeps,
                                             # tokenizers as codecs; JSON + plotly HTML + PNG

Codecs are measured by :func:`museumtok.eval.metrics.measure_codec` (the one codec loop), plotted by
:mod:`museumtok.eval.plot`; cached results are keyed by :func:`museumtok.fingerprint.checkpoint_fingerprint`.

Rates are 8 × the bytes actually written (headers included) divided by the pixel count. Kodak images
are coded at their native 768×512; artworks at a 512×512 centre crop of the catalog image.

BD-rate / BD-PSNR (Bjøntegaard, VCEG-M33, 2001) use piecewise cubic (PCHIP) interpolation of
log-rate against PSNR (and PSNR against log-rate), integrated over the overlapping interval, as in
the common "pchip" variant of the JVET reference scripts.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..data.catalog import named_set
from ..data.images import load_image, pil_to_tensor, working_image
from ..fingerprint import checkpoint_fingerprint
from .metrics import image_metrics, measure_codec

#: CompressAI's published Kodak results for bmshj2018-hyperprior (MSE, quality 1–8): (bpp, PSNR dB).
#: Source: CompressAI, results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json
#: (Bégaint et al., "CompressAI: a PyTorch library and evaluation platform for end-to-end
#: compression research", arXiv:2011.03029), as quoted in issue 5.
COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK = (
    (0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84),
    (0.669, 34.53), (0.939, 36.74), (1.259, 38.58), (1.660, 40.56),
)

JPEG_QUALITIES = (2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (1, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
ARTWORK_SIZE = 512


# ---- data -------------------------------------------------------------------------------------
def rd_images(set_name: str, limit: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(id, (3, H, W)) for an evaluation set: Kodak at native size, artworks as a 512 px centre crop."""
    out = []
    for e in named_set(set_name)[:limit]:
        img = load_image(e.find()).image
        x = pil_to_tensor(img) if e.collection == "kodak" else working_image(img, ARTWORK_SIZE).x
        out.append((e.id, x))
    return out


def evaluate_codec(codec, images: list[tuple[str, torch.Tensor]], **params) -> dict:
    """Compress + decompress every image for real; per-image and mean bpp, PSNR, SSIM, MS-SSIM, ms."""
    keys = ("image", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms", "decode_ms", "bpp_estimated")
    rows = [{k: r[k] for k in keys if k in r} for r in measure_codec(codec, images, estimate=True, **params)]
    return {"params": params, "images": rows, **mean_row(rows)}


def cached(key: dict, fn):
    """``fn()`` memoised on disk under ~/.cache/museumtok/rd/, keyed by a JSON-able dict."""
    import hashlib

    from ..paths import cache_dir

    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir("rd") / f"{h}.json"
    if path.exists():
        return json.loads(path.read_text())
    out = fn()
    path.write_text(json.dumps(out))
    return out


def _checkpoint_stamp(name: str) -> str:
    """Identifies a registry entry's weights (:func:`checkpoint_fingerprint`), or the Pillow version."""
    from .. import registry

    stamp = checkpoint_fingerprint(registry.get(name))
    if stamp is None:
        import PIL

        return f"pillow-{PIL.__version__}"
    return stamp


def mean_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


# ---- Bjøntegaard -------------------------------------------------------------------------------
def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator

    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _check_curve(rate, dist, name):
    rate, dist = np.asarray(rate, float), np.asarray(dist, float)
    if len(rate) < 2 or len(rate) != len(dist):
        raise ValueError(f"{name}: need at least 2 (rate, PSNR) points of equal length, got {len(rate)} and {len(dist)}")
    if np.any(rate <= 0):
        raise ValueError(f"{name}: rates must be positive")
    if len(np.unique(dist)) != len(dist) or len(np.unique(rate)) != len(rate):
        raise ValueError(f"{name}: repeated rates or PSNRs; BD metrics need distinct points")
    return rate, dist


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average rate difference (%) of the test curve vs the reference at equal PSNR (negative = saves bits)."""
    r1, d1 = _check_curve(rate_ref, psnr_ref, "reference")
    r2, d2 = _check_curve(rate_test, psnr_test, "test")
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if hi <= lo:
        raise ValueError(f"the PSNR ranges do not overlap ({d1.min():.2f}–{d1.max():.2f} vs {d2.min():.2f}–{d2.max():.2f} dB)")
    i1 = _pchip_integral(d1, np.log10(r1), lo, hi)
    i2 = _pchip_integral(d2, np.log10(r2), lo, hi)
    return float((10 ** ((i2 - i1) / (hi - lo)) - 1) * 100)


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average PSNR difference (dB) of the test curve vs the reference at equal rate (positive = better)."""
    r1, d1 = _check_curve(rate_ref, psnr_ref, "reference")
    r2, d2 = _check_curve(rate_test, psnr_test, "test")
    l1, l2 = np.log10(r1), np.log10(r2)
    lo, hi = max(l1.min(), l2.min()), min(l1.max(), l2.max())
    if hi <= lo:
        raise ValueError("the rate ranges do not overlap")
    return float((_pchip_integral(l2, d2, lo, hi) - _pchip_integral(l1, d1, lo, hi)) / (hi - lo))


# ---- sweeps and the full evaluation ---------------------------------------------------------
def learned_codecs() -> dict[str, list[str]]:
    """Learned codecs present here by family ("hyperprior": ["hyperprior-q1", ...]), from the registry:
    the bundled ones and published ones whose weights are in the cache (e.g. "compressai-mbt2018-mean")."""
    from .. import registry

    fams: dict[str, list[str]] = {}
    for e in registry.entries("codec"):
        if e.learned and e.available:
            fams.setdefault(e.name.rsplit("-q", 1)[0], []).append(e.name)
    return fams


def tokenizer_points(name: str, images_set: str, limit: int | None = None) -> list[dict]:
    """One RD point per supported M: indices range-coded under the unigram prior fitted on the train split and
    saved with the checkpoint (``prior.json``; ``tok.entropy_bits`` gives the same size as ``bits_coded``).

    Measured at the tokenizer's working resolution (centre crop of S×S px); bpp is per working pixel, from the
    real bytes; an M without a prior (``museumtok prior fit NAME`` writes one) is rated at M·log2 K, raw.
    """
    from .. import registry
    from ..data.dataset import eval_batch

    tok = registry.load(name)
    out = []
    for M in tok.supported_M:
        S = tok.working_size(M)
        prior = tok.priors.get(M)   # the checkpoint's prior.json, or None
        with torch.no_grad():
            x, entries = eval_batch(images_set, S, limit)
            idx = tok.encode_tensor(x, M)
            x_hat = tok.decode_indices(idx, M).clamp(0, 1)
        rows = []
        for i, e in enumerate(entries):
            data = prior.encode(idx[i]) if prior is not None else None
            assert data is None or np.array_equal(prior.decode(data, idx[i].numel()), idx[i].reshape(-1).numpy())
            bits = 8 * len(data) if data is not None else M * math.log2(tok.K)
            m = image_metrics(x[i : i + 1], x_hat[i : i + 1], with_lpips=False)
            p, ssim_, ms = (float(m[k][0]) for k in ("psnr", "ssim", "ms_ssim"))
            rows.append({"image": e.id, "bytes": None if data is None else len(data), "bpp": bits / S**2,
                         "bits_coded": tok.entropy_bits(idx[i]),
                         "bpp_raw": M * math.log2(tok.K) / S**2, "psnr": p, "ssim": ssim_, "ms_ssim": ms})
        out.append({"params": {"M": M, "size": S}, "images": rows, **mean_row(rows)})
    return out


def _lmbda(folder: Path | None, load) -> float:
    """λ of a learned codec from its folder's config.json, without loading the network (``load()`` otherwise)."""
    cfg = Path(folder) / "config.json" if folder is not None else None
    if cfg is not None and cfg.is_file():
        lmbda = json.loads(cfg.read_text()).get("lmbda")
        if lmbda is not None:
            return float(lmbda)
    return load().cfg.lmbda


def run_rd(set_name: str = "kodak", limit: int | None = None, codecs: list[str] | None = None,
           tokenizers: list[str] | None = None, jpeg_qualities=JPEG_QUALITIES, webp_qualities=WEBP_QUALITIES,
           progress: bool = False, extra: list[str] | None = None) -> dict:
    """Evaluate every bundled learned codec, JPEG/WebP sweeps and tokenizers on a set; BD metrics vs JPEG.
    ``extra``: checkpoint folders of learned codecs outside the registry (a run of your own, CompressAI's
    class trained here), one curve each, named by the folder."""
    from .. import registry
    from ..checkpoint import load_folder
    from ..fingerprint import folder_fingerprint

    images = rd_images(set_name, limit)
    say = print if progress else (lambda *a, **k: None)
    ids = [i for i, _ in images]

    def run(name, codec_fn, **params):  # cached per (set, images, codec weights, params)
        key = {"set": set_name, "images": ids, "codec": name, "stamp": _checkpoint_stamp(name), "params": params,
               "v": 1}
        return cached(key, lambda: evaluate_codec(codec_fn(), images, **params))

    res: dict = {"set": set_name, "images": [i for i, _ in images], "curves": {}}
    for fmt, qs in (("jpeg", jpeg_qualities), ("webp", webp_qualities)):
        res["curves"][fmt] = {"kind": "classical", "points": [
            run(fmt, lambda fmt=fmt: registry.load(fmt), quality=q) for q in qs]}
        say(f"{fmt}: {len(qs)} qualities")
    fams = learned_codecs()
    if codecs is not None:
        fams = {f: [n for n in ns if n in codecs or f in codecs] for f, ns in fams.items()}
    for fam, names in fams.items():
        pts = []
        for n in sorted(names):
            r = run(n, lambda n=n: registry.load(n))
            r["params"] = {"codec": n, "lmbda": _lmbda(registry.get(n).checkpoint_path, lambda n=n: registry.load(n))}
            pts.append(r)
            say(f"{n}: {r['bpp']:.3f} bpp, {r['psnr']:.2f} dB")
        if pts:
            res["curves"][fam] = {"kind": "learned", "points": pts}
    for folder in extra or []:
        key = {"set": set_name, "images": ids, "folder": folder_fingerprint(Path(folder)), "v": 1}
        r = cached(key, lambda folder=folder: evaluate_codec(load_folder(folder), images))  # loaded on a miss only
        name = Path(folder).name if Path(folder).name not in res["curves"] else str(folder)   # no clash with a family
        r["params"] = {"codec": name, "lmbda": _lmbda(Path(folder), lambda folder=folder: load_folder(folder))}
        res["curves"][name] = {"kind": "learned", "points": [r], "folder": str(folder)}
        say(f"{folder}: {r['bpp']:.3f} bpp, {r['psnr']:.2f} dB")
    tokenizers = registry.names("tokenizer") if tokenizers is None else tokenizers
    for t in tokenizers:
        key = {"set": set_name, "limit": limit, "tokenizer": t, "stamp": _checkpoint_stamp(t), "v": 2}
        res["curves"][t] = {"kind": "tokenizer", "points": cached(key, lambda t=t: tokenizer_points(t, set_name, limit))}
        say(f"{t}: {len(res['curves'][t]['points'])} points")
    if set_name == "kodak" and limit is None:
        ref = COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK
        res["curves"]["compressai-bmshj2018-hyperprior (published)"] = {
            "kind": "reference", "points": [{"bpp": b, "psnr": p} for b, p in ref],
            "source": "CompressAI (Bégaint et al. 2020, arXiv:2011.03029), Kodak, MSE, quality 1–8"}
    res["bd_vs_jpeg"] = bd_table(res)
    return res


def _curve(res: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted(res["curves"][name]["points"], key=lambda p: p["bpp"])
    return np.array([p["bpp"] for p in pts]), np.array([p["psnr"] for p in pts])


def bd_table(res: dict, anchor: str = "jpeg") -> list[dict]:
    """BD-rate and BD-PSNR of every codec curve with ≥ 2 points against ``anchor`` (learned ones also
    against the published reference). Tokenizers are left out: their points are measured at their own
    working resolution, not on the same images."""
    rows = []
    ra, pa = _curve(res, anchor)
    ref_name = next((n for n, c in res["curves"].items() if c["kind"] == "reference"), None)
    for name, c in res["curves"].items():
        if name == anchor or len(c["points"]) < 2 or c["kind"] == "tokenizer":
            continue
        r, p = _curve(res, name)
        row = {"curve": name, "kind": c["kind"], "vs": anchor}
        for key, fn, args in (("bd_rate_%", bd_rate, (ra, pa, r, p)), ("bd_psnr_dB", bd_psnr, (ra, pa, r, p))):
            try:
                row[key] = fn(*args)
            except ValueError as err:
                row[key] = None
                row.setdefault("note", str(err))
        if ref_name and c["kind"] == "learned":
            rr, pr = _curve(res, ref_name)
            try:
                row["bd_psnr_vs_compressai_dB"] = bd_psnr(rr, pr, r, p)
            except ValueError as err:
                row["bd_psnr_vs_compressai_dB"] = None
                row.setdefault("note", str(err))
        rows.append(row)
    return rows


def rd_panels(res: dict, metric: str = "psnr") -> list:
    """The curves of an RD result as one :class:`museumtok.eval.plot.Panel` (style = the curve's kind)."""
    from .plot import Panel, Series

    series = []
    for name, c in res["curves"].items():
        pts = sorted((p for p in c["points"] if metric in p), key=lambda p: p["bpp"])
        if pts:
            series.append(Series(name, [p["bpp"] for p in pts], [p[metric] for p in pts], c["kind"],
                                 text=[", ".join(f"{k}={v}" for k, v in p.get("params", {}).items()) for p in pts]))
    return [Panel(res["set"], series)]


def _ylabel(metric: str) -> str:
    return "PSNR (dB)" if metric == "psnr" else "MS-SSIM"


def rd_figure(res: dict, metric: str = "psnr"):
    """Plotly RD plot: bpp (real bytes) against PSNR or MS-SSIM, one trace per curve."""
    from .plot import rd_plotly

    return rd_plotly(rd_panels(res, metric), f"Rate–distortion on {res['set']} ({len(res['images'])} images, real bytes)",
                     _ylabel(metric), x_max=2.0)


def rd_png(res: dict, path: Path, metric: str = "psnr") -> Path:
    """The same plot as a PNG (matplotlib)."""
    from .plot import rd_png as png

    return png(rd_panels(res, metric), path, f"Rate–distortion on {res['set']} ({len(res['images'])} images)",
               _ylabel(metric), x_max=2.0)


def psnr_gain_at_rate(res: dict, anchor: str, bpp: float, psnr_db: float) -> float | None:
    """PSNR of one (bpp, PSNR) point minus the anchor curve's PSNR at the same rate (PCHIP in log-rate, as
    BD-PSNR; BD-PSNR is the average of this over the overlap). None outside the anchor's rate range.
    It places a codec with a single point, like ``context-q3``, against a curve."""
    from scipy.interpolate import PchipInterpolator

    if anchor not in res["curves"] or len(res["curves"][anchor]["points"]) < 2:
        return None
    r, p = _curve(res, anchor)
    if not r.min() <= bpp <= r.max():
        return None
    return float(psnr_db - PchipInterpolator(np.log10(r), p)(np.log10(bpp)))


def summary_table(res: dict, anchor: str = "jpeg") -> list[dict]:
    """Mean bpp / PSNR / MS-SSIM / times for every learned codec point, and its PSNR gain over the anchor
    (JPEG) at the same rate, for the README."""
    rows = []
    for name, c in res["curves"].items():
        if c["kind"] != "learned":
            continue
        for p in c["points"]:
            rows.append({"codec": p["params"]["codec"], "λ": p["params"]["lmbda"], "bpp": p["bpp"],
                         "bpp est.": p.get("bpp_estimated"), "PSNR dB": p["psnr"], "MS-SSIM": p["ms_ssim"],
                         f"Δ dB vs {anchor}": psnr_gain_at_rate(res, anchor, p["bpp"], p["psnr"]),
                         "enc ms": p["encode_ms"], "dec ms": p["decode_ms"]})
    return rows


def write_rd(res: dict, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"rd_{res['set']}"
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.html", out_dir / f"{stem}.png"]
    paths[0].write_text(json.dumps(res, indent=1), encoding="utf-8")
    rd_figure(res).write_html(str(paths[1]), include_plotlyjs="cdn")
    rd_png(res, paths[2])
    return paths


__all__ = ["COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK", "rd_images", "evaluate_codec", "bd_rate", "bd_psnr",
           "learned_codecs", "tokenizer_points", "run_rd", "bd_table", "rd_panels", "rd_figure", "rd_png", "write_rd",
           "summary_table", "psnr_gain_at_rate"]
