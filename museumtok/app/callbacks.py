"""Pure callbacks behind ``app.py``: plain Python in, plain Python out, unit-tested without Gradio.

Every callback catches bad input and returns a message instead of raising, so one visitor's broken
file never takes the app down for the next.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .. import registry
from ..codecs.pillow import PillowCodec
from ..data.catalog import CatalogEntry, DataNotFound, load_catalog
from ..data.images import ImageLoadError, load_image, tensor_to_pil
from ..evaluate import image_metrics
from ..llm.budget import ContextBudget
from ..metrics import lpips_available
from ..paths import cache_dir, museumtok_command, no_images_hint
from ..tokenizers.base import UnsupportedM
from ..viz import budget_figure, error_map, token_grid_figure

METRIC_COLUMNS = ["method", "M", "bits", "bpp", "PSNR dB", "SSIM", "MS-SSIM", "LPIPS", "encode ms", "decode ms", "note"]


@dataclass
class TokenizeResult:
    error: str | None = None
    original: Image.Image | None = None        # the working crop the tokenizer saw
    reconstruction: Image.Image | None = None
    error_image: Image.Image | None = None
    grid: Any = None                           # plotly figure
    budget: Any = None                         # plotly figure
    metrics: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tokens: Any = None                         # the TokenizedImage
    comparisons: dict[str, Image.Image] = field(default_factory=dict)

    def metrics_rows(self) -> list[list]:
        return [[r.get(c, "") for c in METRIC_COLUMNS] for r in self.metrics]


# ---- menus -----------------------------------------------------------------------------------
def tokenizer_choices() -> list[str]:
    return registry.names("tokenizer")


def m_choices(name: str) -> tuple[list[int], int | None]:
    """(M values offered, default M) for a registry name; codecs offer none."""
    e = registry.get(name)
    return list(e.supported_M), e.default_M


def m_slider_range(name: str) -> tuple[int, int] | None:
    """(min, max) when the tokenizer takes any M in a range (the app shows a slider), else None."""
    e = registry.get(name)
    return (e.supported_M[0], e.supported_M[-1]) if e.m_is_range else None


def catalog_gallery(collections: tuple[str, ...] = ("artworks",)) -> list[tuple[str, str]]:
    """(thumbnail path, caption) for every catalog image that is present on this machine."""
    out = []
    thumbs = cache_dir("thumbs")
    for e in load_catalog():
        if e.collection not in collections:
            continue
        try:
            src = e.find()
        except DataNotFound:
            continue
        t = thumbs / f"{e.id}.jpg"
        if not t.exists():
            img = load_image(src).image
            img.thumbnail((256, 256))
            img.save(t, quality=85)
        out.append((str(t), f"{e.title} — {e.artist}, {e.year}"))
    return out


GALLERY_LABEL = "…or pick an artwork from the catalog"


def gallery_label(items: list) -> str:
    """The gallery's label: the usual invitation, or (no image on this machine) what to do about it."""
    if items:
        return GALLERY_LABEL
    return f"No catalog images found: run {museumtok_command()} data fetch or set MUSEUMTOK_DATA, then restart the app"


def catalog_hint(items: list) -> str:
    """Markdown shown above an empty gallery (empty string when the catalog's images are present)."""
    if items:
        return ""
    return f"**⚠ {no_images_hint()}** Then restart the app. Uploading your own image works meanwhile."


def gallery_entry(index: int, collections: tuple[str, ...] = ("artworks",)) -> CatalogEntry:
    present = []
    for e in load_catalog():
        if e.collection in collections:
            try:
                e.find()
                present.append(e)
            except DataNotFound:
                pass
    return present[index]


# ---- the main callback ----------------------------------------------------------------------
def _fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return round(float(v), nd)


def _row(method, M, bits, h, w, x, x_hat, enc_ms, dec_ms, note=""):
    m = image_metrics(x.unsqueeze(0), x_hat.unsqueeze(0))
    return {
        "method": method, "M": M if M is not None else "–", "bits": int(round(bits)),
        "bpp": _fmt(bits / (h * w), 4), "PSNR dB": _fmt(m["psnr"][0].item()), "SSIM": _fmt(m["ssim"][0].item(), 4),
        "MS-SSIM": _fmt(m["ms_ssim"][0].item(), 4),
        "LPIPS": _fmt(m["lpips"][0].item(), 4) if m["lpips"] is not None else "n/a",
        "encode ms": _fmt(enc_ms, 1), "decode ms": _fmt(dec_ms, 1), "note": note,
    }


def tokenize_image(
    source,
    tokenizer: str,
    M: int | None = None,
    context: int = 4096,
    text_tokens: int = 200,
    compare: bool = True,
) -> TokenizeResult:
    """Encode, decode and measure one image; compare with JPEG and WebP at the same bits."""
    if source is None or (isinstance(source, str) and not source.strip()):
        return TokenizeResult(error="Upload an image or pick an artwork from the gallery first.")
    try:
        entry = registry.get(tokenizer)
    except KeyError as err:
        return TokenizeResult(error=str(err))
    if entry.kind != "tokenizer":
        return TokenizeResult(error=f"{tokenizer} is a codec, not a tokenizer.")
    try:
        loaded = load_image(source)
    except ImageLoadError as err:
        return TokenizeResult(error=f"Cannot use this file: {err}")
    try:
        tok = registry.load(tokenizer)
        Mv = tok.check_M(M)
        t = tok.encode(loaded.image, Mv)
        t0 = time.perf_counter()
        x_hat = tok.decode(t)
        dec_ms = (time.perf_counter() - t0) * 1e3
    except UnsupportedM as err:
        return TokenizeResult(error=str(err))
    except (registry.CheckpointMissing, FileNotFoundError) as err:
        return TokenizeResult(error=str(err))
    x = t.working.x
    h, w = x.shape[-2:]
    res = TokenizeResult(original=tensor_to_pil(x), reconstruction=tensor_to_pil(x_hat), tokens=t,
                         notes=list(loaded.notes))
    res.error_image = error_map(x, x_hat)
    res.grid = token_grid_figure(t)
    coded = f", entropy-coded {t.bits_coded:.0f} bits" if t.bits_coded is not None else unigram_note(tok, t)
    res.metrics.append(_row(tokenizer, t.M, t.bits, h, w, x, x_hat, t.encode_ms, dec_ms,
                            f"raw {t.bits_raw:.0f} bits = {t.M}·log2 {t.K}{coded}"))
    if compare:
        for codec_name in ("jpeg", "webp"):
            codec: PillowCodec = registry.load(codec_name)
            br = codec.compress_at_bits(x, t.bits)
            t0 = time.perf_counter()
            y = codec.decompress(br.encoded)
            d_ms = (time.perf_counter() - t0) * 1e3
            res.metrics.append(_row(f"{codec_name} @ same bits", None, br.encoded.bits, h, w, x, y,
                                    br.encoded.encode_ms, d_ms, br.note()))
            res.comparisons[codec_name] = tensor_to_pil(y)
            if not br.fits:
                res.notes.append(br.note())
    ok, reason = lpips_available()
    if not ok:
        res.notes.append(f"LPIPS n/a: {reason}")
    if min(h, w) < 161:
        res.notes.append(f"MS-SSIM at {h} px uses the scales that fit (5 need ≥161 px), weights renormalised.")
    l, tp, r, b = t.working.crop_box
    res.notes.append(f"working image: centre crop ({l},{tp})–({r},{b}) of the {loaded.image.size[0]}×"
                     f"{loaded.image.size[1]} original, resized to {w}×{h}")
    res.budget = budget_figure(ContextBudget(context=int(context), images=1, M=t.M, text_tokens=int(text_tokens)))
    return res


def unigram_note(tok, t) -> str:
    """", unigram-coded N bits": the indices range-coded under a prior fitted on the training split (§5)."""
    try:
        from ..entropy.unigram import prior_for

        nbytes = len(prior_for(tok, t.M).encode(t.indices))
    except Exception as err:  # a missing training image must not take the result down
        return f" (entropy-coded size n/a: {err})"
    return f", unigram-coded {8 * nbytes} bits ({nbytes} bytes)"


def budget(context: int, images: int, M: int, text_tokens: int):
    """The context-budget bar on its own (the sliders of chapter 1)."""
    try:
        b = ContextBudget(context=int(context), images=int(images), M=int(M), text_tokens=int(text_tokens))
    except (TypeError, ValueError):
        return None, "context, images, M and text tokens must be whole numbers"
    return budget_figure(b), b.summary()


def notes_markdown(res: TokenizeResult) -> str:
    if res.error:
        return f"**⚠ {res.error}**"
    return "\n".join(f"- {n}" for n in res.notes)
