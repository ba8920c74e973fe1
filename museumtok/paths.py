"""Where museumtok finds its repository files, images, checkpoints and caches.

Images are never committed: they are looked up, in order, in ``$MUSEUMTOK_DATA`` (when set: your
choice wins), in ``data/images/`` (what ``museumtok data fetch`` downloads) and in ``../shared/data``
beside the repository (see :func:`image_roots`). Caches (the converted LLM, downloaded weights) live
under ``~/.cache/museumtok``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: The repository root (the folder holding ``museumtok/``, ``data/`` and ``app.py``).
REPO_ROOT = Path(os.environ.get("MUSEUMTOK_ROOT", Path(__file__).resolve().parents[1]))
DATA_DIR = REPO_ROOT / "data"
#: The catalog in force: ``data/catalog.csv``, or your own collection's (``$MUSEUMTOK_CATALOG``,
#: written by ``museumtok data catalog --folder DIR``).
CATALOG_CSV = Path(os.environ.get("MUSEUMTOK_CATALOG", DATA_DIR / "catalog.csv"))
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
DOWNLOAD_DIR = DATA_DIR / "images"


def _origin_checkout() -> Path | None:
    """For a local clone (``git clone /path/to/museumtok``), the checkout it was cloned from."""
    cfg = REPO_ROOT / ".git" / "config"
    try:
        text = cfg.read_text()
    except OSError:
        return None
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and line.startswith("url"):
            url = line.split("=", 1)[1].strip()
            if url.startswith("file://"):
                url = url[7:]
            p = Path(url)
            return p if p.is_absolute() and p.is_dir() else None
    return None


def image_roots() -> list[Path]:
    """Folders searched for images, first match wins. Each holds ``artworks/`` and ``kodak/``.

    In this order: ``$MUSEUMTOK_DATA`` (when set, so it overrides a download), ``data/images``
    (``museumtok data fetch``), ``../shared/data`` beside the repository and, for a local clone,
    ``../shared/data`` beside the checkout it was cloned from. A file missing from one folder is
    looked up in the next (``MUSEUMTOK_DATA`` may hold only ``artworks/``).
    """
    roots = []
    env = os.environ.get("MUSEUMTOK_DATA")
    if env:
        roots.append(Path(env))
    roots.append(DOWNLOAD_DIR)
    roots.append(REPO_ROOT.parent / "shared" / "data")
    origin = _origin_checkout()
    if origin is not None and origin.resolve() != REPO_ROOT.resolve():
        roots.append(origin.parent / "shared" / "data")
    return roots


def museumtok_command() -> str:
    """How to type the ``museumtok`` command here: ``.venv/bin/museumtok`` when this interpreter is
    the repository's ``.venv`` (``make`` never activates it), else ``museumtok`` (an activated env)."""
    try:
        if Path(sys.prefix).resolve() == (REPO_ROOT / ".venv").resolve():
            return ".venv/bin/museumtok"
    except OSError:
        pass
    return "museumtok"


def no_images_hint() -> str:
    """What to do when no catalog image is found (shown by the app and the command line)."""
    return (f"No catalog images found: run `{museumtok_command()} data fetch` (downloads them into data/images/, "
            f"checksum-verified) or set MUSEUMTOK_DATA to a folder holding artworks/ and kodak/. "
            f"Searched: {', '.join(str(r) for r in image_roots())}.")


def cache_dir(*parts: str) -> Path:
    """``~/.cache/museumtok/<parts>`` (or ``$MUSEUMTOK_CACHE``), created on demand."""
    base = Path(os.environ.get("MUSEUMTOK_CACHE", Path.home() / ".cache" / "museumtok"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def fast_mode() -> bool:
    """True when ``MUSEUMTOK_FAST=1``: notebooks and demos pick small settings (used by the tests)."""
    return os.environ.get("MUSEUMTOK_FAST", "0") not in ("", "0", "false", "False")
