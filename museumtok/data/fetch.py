"""``museumtok data fetch``: download the catalog's missing images, resumably and verified.

Each file goes to ``data/images/<collection>/<file>``. A partial download is kept as ``*.part`` and
resumed with an HTTP ``Range`` request; every finished file is checked against the catalog's
sha256 before it is moved into place. Errors are retried with exponential back-off and then
reported per file, plainly (no traceback), so one bad URL never stops the rest.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..paths import DOWNLOAD_DIR
from .catalog import CatalogEntry, ChecksumMismatch, DataNotFound, load_catalog, sha256_file

USER_AGENT = "museumtok-data-fetch/1"


@dataclass
class FetchReport:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        s = f"{len(self.downloaded)} downloaded, {len(self.present)} already present, {len(self.failed)} failed"
        for k, v in self.failed.items():
            s += f"\n  {k}: {v}"
        return s


def _url_for(entry: CatalogEntry, mirror: str | None) -> str:
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.collection}/{entry.file}"
    return entry.url


def download_one(
    entry: CatalogEntry,
    dest_root: Path = DOWNLOAD_DIR,
    mirror: str | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Download one entry (resuming a ``.part`` file), verify it, and return its final path."""
    dest = Path(dest_root) / entry.collection / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = _url_for(entry, mirror)
    last_err = "unknown error"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        if have > entry.bytes:  # a corrupt leftover: start again
            part.unlink()
            have = 0
        if have < entry.bytes:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            if have:
                req.add_header("Range", f"bytes={have}-")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    status = getattr(resp, "status", 200)
                    mode = "ab" if have and status == 206 else "wb"
                    if mode == "wb":
                        have = 0
                    with open(part, mode) as f:
                        while True:
                            chunk = resp.read(1 << 16)
                            if not chunk:
                                break
                            f.write(chunk)
                            if progress:
                                progress(len(chunk))
            except urllib.error.HTTPError as err:
                last_err = f"HTTP {err.code} {err.reason} from {url}"
                if err.code in (404, 410, 403):
                    break  # retrying will not help
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                last_err = f"cannot reach {url} ({reason})"
                continue
        got = part.stat().st_size if part.exists() else 0
        if got < entry.bytes:
            last_err = f"connection closed after {got} of {entry.bytes} bytes"
            continue
        digest = sha256_file(part)
        if digest != entry.sha256:
            part.unlink()
            last_err = f"checksum mismatch (got {digest[:12]}…, catalog says {entry.sha256[:12]}…)"
            continue
        part.replace(dest)
        return dest
    raise DataNotFound(f"{entry.relpath}: {last_err}")


def fetch(
    entries: Iterable[CatalogEntry] | None = None,
    dest_root: Path = DOWNLOAD_DIR,
    mirror: str | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    force: bool = False,
    show_progress: bool = True,
) -> FetchReport:
    """Download every missing (or, with ``force``, every) catalog image into ``dest_root``."""
    entries = list(entries) if entries is not None else load_catalog()
    report = FetchReport()
    todo = []
    for e in entries:
        if not force:
            try:
                p = e.find()
                if sha256_file(p) == e.sha256:
                    report.present.append(e.id)
                    continue
            except (DataNotFound, ChecksumMismatch):
                pass
        todo.append(e)
    total = sum(e.bytes for e in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc="fetch", disable=not show_progress or not todo) as bar:
        for e in todo:
            try:
                download_one(e, dest_root, mirror, retries, backoff, timeout, progress=bar.update)
                report.downloaded.append(e.id)
            except DataNotFound as err:
                report.failed[e.id] = str(err).split(": ", 1)[-1]
    return report
