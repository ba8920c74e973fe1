"""The app's header: the artwork every tab works on (catalog gallery, examples, the current artwork's
preview and caption) and the tokenizer / M menus. Pure functions, unit-tested without Gradio
(``tests/test_app_callbacks.py``, ``tests/test_data_roots_and_hints.py``).
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from .. import registry
from ..data.catalog import CatalogEntry, DataNotFound, load_catalog
from ..data.images import ImageLoadError, load_image
from ..paths import cache_dir, museumtok_command, no_images_hint
from .i18n import error_text, t as tr


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
