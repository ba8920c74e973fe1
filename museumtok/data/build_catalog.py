"""Maintainer tool: rebuild ``data/catalog.csv`` from a data folder laid out like ``../shared/data``.

Reads each collection's own ``catalog.csv`` / ``SOURCE.md``, hashes every file, pins a raw download
URL to the source repository's snapshot commit and assigns the fixed split. Run it with
``museumtok data catalog --from ../shared/data``; the split is a pure function of the artwork id.
"""
from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from PIL import Image

from .catalog import CatalogEntry, sha256_file, write_catalog

#: Fraction of artworks held out, by rank of a salted hash of the id (so adding works is stable).
N_TEST, N_VAL = 15, 10
KODAK_REPO = "Zelex/images"


def split_for(ids: list[str]) -> dict[str, str]:
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"museumtok-split-v1:{i}".encode()).hexdigest())
    return {i: ("test" if r < N_TEST else "val" if r < N_TEST + N_VAL else "train") for r, i in enumerate(ranked)}


def _commits(source_md: Path) -> dict[str, str]:
    """``owner/repo`` -> 40-hex commit, from a SOURCE.md table row or prose."""
    out: dict[str, str] = {}
    for line in source_md.read_text(encoding="utf-8").splitlines():
        m = re.search(r"`([\w.-]+/[\w.-]+)`\s*\|\s*`([0-9a-f]{40})`", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def raw_url(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def build(root: Path) -> list[CatalogEntry]:
    root = Path(root)
    entries: list[CatalogEntry] = []
    art = root / "artworks"
    commits = _commits(art / "SOURCE.md")
    rows = list(csv.DictReader(open(art / "catalog.csv", newline="", encoding="utf-8")))
    splits = split_for([r["id"] for r in rows])
    for r in rows:
        p = art / r["file"]
        commit = commits[r["source_repo"]]
        entries.append(CatalogEntry(
            id=r["id"], collection="artworks", file=r["file"], title=r["title"], artist=r["artist"],
            year=r["year"], medium=r["medium"], width=int(r["width"]), height=int(r["height"]),
            sha256=sha256_file(p), bytes=p.stat().st_size,
            url=raw_url(r["source_repo"], commit, r["source_path"]),
            source_repo=r["source_repo"], source_commit=commit, source_path=r["source_path"],
            license_note=r["license_note"], split=splits[r["id"]],
        ))
    kodak = root / "kodak"
    text = (kodak / "SOURCE.md").read_text(encoding="utf-8")
    m = re.search(r"Snapshot commit: `([0-9a-f]{40})`", text)
    kcommit = m.group(1)
    for p in sorted(kodak.glob("kodim*.png")):
        w, h = Image.open(p).size
        entries.append(CatalogEntry(
            id=p.stem, collection="kodak", file=p.name, title=f"Kodak {p.stem}", artist="Eastman Kodak",
            year="1991", medium="Photograph (Kodak PhotoCD PCD0992), lossless PNG", width=w, height=h,
            sha256=sha256_file(p), bytes=p.stat().st_size,
            url=raw_url(KODAK_REPO, kcommit, f"kodak/{p.name}"),
            source_repo=KODAK_REPO, source_commit=kcommit, source_path=f"kodak/{p.name}",
            license_note="released by Kodak for unrestricted use", split="test",
        ))
    return entries


#: Held-out fractions for a collection of your own (by rank of the same salted hash as above).
FOLDER_TEST, FOLDER_VAL = 0.15, 0.10
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")


def split_fractions(ids: list[str], test: float = FOLDER_TEST, val: float = FOLDER_VAL) -> dict[str, str]:
    """Like :func:`split_for` with fractions instead of counts (at least one test image when n ≥ 3)."""
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"museumtok-split-v1:{i}".encode()).hexdigest())
    n = len(ranked)
    n_test = max(1, round(test * n)) if n >= 3 else 0
    n_val = max(1, round(val * n)) if n >= 3 else 0
    return {i: ("test" if r < n_test else "val" if r < n_test + n_val else "train") for r, i in enumerate(ranked)}


def build_from_folder(root: Path, keep_kodak: list[CatalogEntry] | None = None) -> list[CatalogEntry]:
    """A catalog for your own collection: every image in ``root/artworks/`` (title from the file name).

    Checksums and sizes are read from the files; the split is a pure function of the id (the file's
    stem), so adding images later keeps the existing ones where they were. ``keep_kodak``: Kodak
    entries to carry over, so the held-out Kodak evaluation keeps working.
    """
    art = Path(root) / "artworks"
    files = sorted(p for p in art.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if art.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no images in {art}: put your collection's files in <DIR>/artworks/")
    ids = [re.sub(r"[^A-Za-z0-9_-]+", "-", p.stem).strip("-").lower() or "image" for p in files]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"file names give duplicate ids {dup[:5]}; rename them")
    splits = split_fractions(ids)
    entries = []
    for i, p in zip(ids, files):
        with Image.open(p) as im:
            w, h = im.size
        entries.append(CatalogEntry(
            id=i, collection="artworks", file=p.name, title=p.stem.replace("_", " "), artist="", year="",
            medium="", width=w, height=h, sha256=sha256_file(p), bytes=p.stat().st_size, url="",
            source_repo="", source_commit="", source_path=str(p.name), license_note="your collection",
            split=splits[i]))
    return entries + list(keep_kodak or [])


def main(root: Path, out: Path) -> int:
    entries = build(root)
    write_catalog(entries, out)
    return len(entries)
