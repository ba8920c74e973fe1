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
CATALOG_CSV = DATA_DIR / "catalog.csv"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
DOWNLOAD_DIR = DATA_DIR / "images"


def image_roots() -> list[Path]:
    """Folders searched for images, first match wins. Each holds ``artworks/`` and ``kodak/``."""
    roots = [DOWNLOAD_DIR]
    env = os.environ.get("MUSEUMTOK_DATA")
    if env:
        roots.append(Path(env))
    roots.append(REPO_ROOT.parent / "shared" / "data")
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
