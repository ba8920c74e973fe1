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
from .i18n import error_text, t as tr

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
    headline: str = ""                         # the numbers that matter, in one line of plain words
    shown: dict[str, Image.Image] = field(default_factory=dict)   # original / recon / jpeg / webp upscaled for display
    scale: int = 1                             # display upscaling factor of ``shown``

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


SAMPLE_IDS = ("vangogh_the-starry-night", "leonardo_mona-lisa", "hokusai_the-great-wave-off-kanagawa",
              "vermeer_girl-with-a-pearl-earring")


def sample_artworks(n: int = 4) -> list[str]:
    """Paths of a few well-known catalog artworks present on this machine (the header's examples)."""
    out = []
    entries = {e.id: e for e in load_catalog(collection="artworks")}
    for i in list(SAMPLE_IDS) + list(entries):
        if len(out) >= n:
            break
        e = entries.get(i)
        try:
            p = str(e.find()) if e is not None else None
        except DataNotFound:
            p = None
        if p and p not in out:
            out.append(p)
    return out


def current_artwork_title(path) -> str:
    """"Title — Artist" of a catalog file (its file name otherwise)."""
    name = Path(str(path)).name
    e = next((e for e in load_catalog(collection="artworks") if e.file == name), None)
    return f"{e.title} — {e.artist}" if e else name


def current_artwork(source, lang: str = "en") -> tuple[Image.Image | None, str]:
    """The header's preview and caption of the current artwork: the catalog's title/artist/year when the file
    is a catalog image, the file name and size for an upload, or what is wrong with the file."""
    if source is None or (isinstance(source, str) and not source.strip()):
        return None, tr("current_none", lang)
    try:
        loaded = load_image(source)
    except ImageLoadError as err:
        return None, "**⚠ " + tr("cannot_use", lang, why=error_text(err, lang)) + "**"
    img = loaded.image.copy()
    img.thumbnail((384, 384))
    name = Path(str(source)).name
    for e in load_catalog(collection="artworks"):
        if e.file == name:
            return img, tr("current_catalog", lang, title=e.title, artist=e.artist, year=e.year)
    w, h = loaded.image.size
    return img, tr("current_upload", lang, name=name, w=w, h=h)


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


def metrics_row(method, M, bits, h, w, x, x_hat, enc_ms, dec_ms, note=""):
    m = image_metrics(x.unsqueeze(0), x_hat.unsqueeze(0))
    return {
        "method": method, "M": M if M is not None else "–", "bits": int(round(bits)),
        "bpp": _fmt(bits / (h * w), 4), "PSNR dB": _fmt(m["psnr"][0].item()), "SSIM": _fmt(m["ssim"][0].item(), 4),
        "MS-SSIM": _fmt(m["ms_ssim"][0].item(), 4),
        "LPIPS": _fmt(m["lpips"][0].item(), 4) if m["lpips"] is not None else "n/a",
        "encode ms": _fmt(enc_ms, 1), "decode ms": _fmt(dec_ms, 1), "note": note,
    }


DISPLAY_SIDE = 512      # pictures are upscaled (nearest neighbour, whole factors) to about this for the screen


def upscale(img: Image.Image, side: int = DISPLAY_SIDE) -> tuple[Image.Image, int]:
    """Nearest-neighbour upscaling by a whole factor so a small working image fills a screen; (image, factor)."""
    k = max(1, side // max(img.size))
    return (img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST) if k > 1 else img), k


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else -10 * math.log10(mse)


def bits_to_match(codec: PillowCodec, x: torch.Tensor, target_psnr: float) -> int | None:
    """Fewest bits at which ``codec`` reaches ``target_psnr`` on ``x`` (binary search over its quality, which
    PSNR follows nearly monotonically); None when even quality 100 falls short."""
    def at(q):
        e = codec.compress(x, quality=q)
        return e.bits, psnr(x, codec.decompress(e))

    if at(100)[1] < target_psnr:
        return None
    lo, hi = 1, 100
    while lo < hi:
        mid = (lo + hi) // 2
        if at(mid)[1] >= target_psnr:
            hi = mid
        else:
            lo = mid + 1
    return int(at(lo)[0])


def _grouped(n: float) -> str:
    return f"{int(round(n)):,}".replace(",", "\u2009")       # 2 560 (thin space), as a museum label would


def plain_line(M: int, bits: float, x: torch.Tensor, x_hat: torch.Tensor, codec: PillowCodec | None, y, fits: bool,
               lang: str = "en", min_bits: float = 0) -> str:
    """"256 tokens = 2 560 bits. With the same bits WebP gives a worse picture (…); WebP needs 4 880 bits to look as
    good." — the one line a board member reads."""
    if codec is None or y is None:
        return tr("plain_line", lang, M=M, bits=_grouped(bits), verdict="")
    name = codec.name.upper() if codec.name == "jpeg" else "WebP"
    pt, pc = psnr(x, x_hat), psnr(x, y)
    if not fits:
        verdict = tr("verdict_nofit", lang, codec=name, need=_grouped(min_bits))
    elif pc < pt:
        need = bits_to_match(codec, x, pt)
        match = tr("verdict_match", lang, codec=name, need=_grouped(need)) if need else ""
        verdict = tr("verdict_worse", lang, codec=name, psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}", match=match)
    else:
        verdict = tr("verdict_better", lang, codec=name, psnr_c=f"{pc:.1f}", psnr_t=f"{pt:.1f}")
    return tr("plain_line", lang, M=M, bits=_grouped(bits), verdict=verdict)


def tokenize_image(
    source,
    tokenizer: str,
    M: int | None = None,
    context: int = 4096,
    text_tokens: int = 200,
    compare: bool = True,
    lang: str = "en",
    progress=None,
) -> TokenizeResult:
    """Encode, decode and measure one image; compare with JPEG and WebP at the same bits.
    ``progress(fraction, text)`` is told what is happening (the app passes ``gr.Progress``)."""
    say = progress or (lambda f, d: None)
    if source is None or (isinstance(source, str) and not source.strip()):
        return TokenizeResult(error=tr("need_image", lang))
    try:
        entry = registry.get(tokenizer)
    except KeyError as err:
        return TokenizeResult(error=str(err))
    if entry.kind != "tokenizer":
        return TokenizeResult(error=tr("is_codec", lang, name=tokenizer))
    try:
        loaded = load_image(source)
    except ImageLoadError as err:
        return TokenizeResult(error=tr("cannot_use", lang, why=error_text(err, lang)))
    try:
        if not registry.is_loaded(tokenizer):
            say(0.1, tr("loading_tok", lang, name=tokenizer))
        tok = registry.load(tokenizer)
        Mv = tok.check_M(M)
        say(0.4, tr("encoding", lang))
        t = tok.encode(loaded.image, Mv)
        t0 = time.perf_counter()
        x_hat = tok.decode(t)
        dec_ms = (time.perf_counter() - t0) * 1e3
    except UnsupportedM as err:
        return TokenizeResult(error=error_text(err, lang))
    except (registry.CheckpointMissing, FileNotFoundError) as err:
        return TokenizeResult(error=str(err))
    x = t.working.x
    h, w = x.shape[-2:]
    res = TokenizeResult(original=tensor_to_pil(x), reconstruction=tensor_to_pil(x_hat), tokens=t,
                         notes=list(loaded.notes))
    res.error_image = error_map(x, x_hat)
    res.grid = token_grid_figure(t)
    coded = f", entropy-coded {t.bits_coded:.0f} bits" if t.bits_coded is not None else unigram_note(tok, t)
    res.metrics.append(metrics_row(tokenizer, t.M, t.bits, h, w, x, x_hat, t.encode_ms, dec_ms,
                            f"raw {t.bits_raw:.0f} bits = {t.M}·log2 {t.K}{coded}"))
    res.shown["original"], res.scale = upscale(res.original)
    res.shown["recon"], _ = upscale(res.reconstruction)
    webp = None
    if compare:
        say(0.7, tr("comparing", lang))
        for codec_name in ("jpeg", "webp"):
            codec: PillowCodec = registry.load(codec_name)
            br = codec.compress_at_bits(x, t.bits)
            t0 = time.perf_counter()
            y = codec.decompress(br.encoded)
            d_ms = (time.perf_counter() - t0) * 1e3
            res.metrics.append(metrics_row(f"{codec_name} @ same bits", None, br.encoded.bits, h, w, x, y,
                                    br.encoded.encode_ms, d_ms, br.note()))
            res.comparisons[codec_name] = tensor_to_pil(y)
            res.shown[codec_name], _ = upscale(res.comparisons[codec_name], DISPLAY_SIDE // 2)
            if not br.fits:
                res.notes.append(br.note())
            if codec_name == "webp":
                webp = (codec, y, br.fits)
                min_bits = br.encoded.bits
    res.headline = plain_line(t.M, t.bits, x, x_hat, *(webp or (None, None, True)), lang=lang,
                              min_bits=min_bits if webp else 0)
    ok, reason = lpips_available()
    if not ok:
        res.notes.append(tr("lpips_na", lang, reason=reason))
    if min(h, w) < 161:
        res.notes.append(f"MS-SSIM at {h} px uses the scales that fit (5 need ≥161 px), weights renormalised.")
    res.notes.append(tr("working_note", lang, W=loaded.image.size[0], H=loaded.image.size[1], S=w))
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
