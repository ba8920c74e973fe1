"""The catalog: every image museumtok uses, its metadata, checksum, download URL and split.

``data/catalog.csv`` is the source of truth. Artworks are split train / val / test by artwork id
(fixed in the file); the 24 Kodak images are ``test`` only and never trained on.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from .. import paths
from ..paths import CATALOG_CSV

COLUMNS = [
    "id", "collection", "file", "title", "artist", "year", "medium", "width", "height",
    "sha256", "bytes", "url", "source_repo", "source_commit", "source_path", "license_note", "split",
]
SPLITS = ("train", "val", "test")
COLLECTIONS = ("artworks", "kodak")


class DataNotFound(FileNotFoundError):
    """An image of the catalog is neither downloaded nor in a known data folder."""


class ChecksumMismatch(ValueError):
    """A file's sha256 differs from the catalog's."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    collection: str       # "artworks" or "kodak"
    file: str             # file name inside <root>/<collection>/
    title: str
    artist: str
    year: str
    medium: str
    width: int
    height: int
    sha256: str
    bytes: int
    url: str              # raw file URL pinned to the source repository's commit
    source_repo: str
    source_commit: str
    source_path: str
    license_note: str
    split: str            # "train", "val" or "test"

    @property
    def relpath(self) -> str:
        return f"{self.collection}/{self.file}"

    def find(self, verify: bool = False) -> Path:
        """Path of the image file, searched in :func:`museumtok.paths.image_roots`."""
        for root in paths.image_roots():
            p = Path(root) / self.collection / self.file
            if p.is_file():
                if verify:
                    verify_file(p, self.sha256)
                return p
        raise DataNotFound(
            f"{self.relpath} not found in {', '.join(str(r) for r in paths.image_roots())}; "
            "run `museumtok data fetch` to download it"
        )

    def card(self) -> str:
        """The catalog card as put in an LLM prompt: "Title: …; Artist: …; Date: …; Medium: …"
        (:class:`Card`, the form the guide is trained to read)."""
        return Card.of(self).text()


# ---- the catalog card the LLM guide reads (museumtok.llm.guide puts it in the prompt) --------------------
CARD_FIELDS = ("title", "artist", "date", "medium")


@dataclass(frozen=True)
class Card:
    """The catalog facts the prompt gives the guide (what it may say about the work)."""

    title: str
    artist: str
    date: str
    medium: str

    @classmethod
    def of(cls, entry) -> "Card":
        """From a :class:`~museumtok.data.catalog.CatalogEntry` (its ``year`` is the card's date)."""
        return cls(entry.title, entry.artist, entry.year, entry.medium)

    def text(self) -> str:
        """"Title: …; Artist: …; Date: …; Medium: …" (the form the guide is trained on)."""
        return "; ".join(f"{f.capitalize()}: {getattr(self, f)}" for f in CARD_FIELDS)

    @classmethod
    def parse(cls, text: str | None) -> "Card | None":
        """The inverse of :meth:`text` (a medium may itself hold "; "); None for no card or free text."""
        m = _CARD_RE.match((text or "").strip())
        return cls(*(g.strip() for g in m.groups())) if m else None


_CARD_RE = re.compile(r"Title:\s*(.*?);\s*Artist:\s*(.*?);\s*Date:\s*(.*?);\s*Medium:\s*(.*)$", re.S)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ChecksumMismatch(f"{path}: sha256 {got[:12]}… differs from the catalog's {expected[:12]}…")


@lru_cache(maxsize=4)
def _read(path: str) -> tuple[CatalogEntry, ...]:
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kw = {fl.name: row[fl.name] for fl in fields(CatalogEntry)}
            kw["width"], kw["height"], kw["bytes"] = int(kw["width"]), int(kw["height"]), int(kw["bytes"])
            out.append(CatalogEntry(**kw))
    return tuple(out)


def load_catalog(
    split: str | Iterable[str] | None = None,
    collection: str | None = None,
    path: Path = CATALOG_CSV,
) -> list[CatalogEntry]:
    """Catalog entries, optionally filtered by split(s) and collection."""
    entries = list(_read(str(path)))
    if split is not None:
        splits = {split} if isinstance(split, str) else set(split)
        bad = splits - set(SPLITS)
        if bad:
            raise ValueError(f"unknown split {sorted(bad)}; choose from {SPLITS}")
        entries = [e for e in entries if e.split in splits]
    if collection is not None:
        if collection not in COLLECTIONS:
            raise ValueError(f"unknown collection {collection!r}; choose from {COLLECTIONS}")
        entries = [e for e in entries if e.collection == collection]
    return entries


def get_entry(image_id: str) -> CatalogEntry:
    for e in _read(str(CATALOG_CSV)):
        if e.id == image_id:
            return e
    raise KeyError(f"no catalog entry {image_id!r}")


def named_set(name: str) -> list[CatalogEntry]:
    """Evaluation sets by name: ``kodak``, ``artworks-test``, ``artworks-val``, ``artworks-train``."""
    if name == "kodak":
        return load_catalog(collection="kodak")
    if name.startswith("artworks-"):
        return load_catalog(split=name.split("-", 1)[1], collection="artworks")
    raise ValueError(f"unknown set {name!r}; choose kodak, artworks-train, artworks-val or artworks-test")


def write_catalog(entries: Iterable[CatalogEntry], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in entries:
            w.writerow(asdict(e))
    _read.cache_clear()
