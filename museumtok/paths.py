"""Where museumtok finds its repository files, images, checkpoints and caches.

Images are never committed: they are looked up, in order, in ``data/images/`` (what
``museumtok data fetch`` downloads), in ``$MUSEUMTOK_DATA`` and in ``../shared/data`` beside the
repository. Caches (the converted LLM, downloaded weights) live under ``~/.cache/museumtok``.
"""
from __future__ import annotations

import os
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

    ``data/images`` (downloads), ``$MUSEUMTOK_DATA``, ``../shared/data`` beside the repository and,
    for a local clone, ``../shared/data`` beside the checkout it was cloned from.
    """
    roots = [DOWNLOAD_DIR]
    env = os.environ.get("MUSEUMTOK_DATA")
    if env:
        roots.append(Path(env))
    roots.append(REPO_ROOT.parent / "shared" / "data")
    origin = _origin_checkout()
    if origin is not None and origin.resolve() != REPO_ROOT.resolve():
        roots.append(origin.parent / "shared" / "data")
    return roots


def cache_dir(*parts: str) -> Path:
    """``~/.cache/museumtok/<parts>`` (or ``$MUSEUMTOK_CACHE``), created on demand."""
    base = Path(os.environ.get("MUSEUMTOK_CACHE", Path.home() / ".cache" / "museumtok"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def fast_mode() -> bool:
    """True when ``MUSEUMTOK_FAST=1``: notebooks and demos pick small settings (used by the tests)."""
    return os.environ.get("MUSEUMTOK_FAST", "0") not in ("", "0", "false", "False")
