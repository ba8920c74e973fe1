"""One fingerprint for a checkpoint: what every cache keyed by "these weights" uses.

A registry entry's weights are identified by content, never by modification time (a ``git checkout`` or a
copy changes mtimes, not weights):

* a checkpoint folder (``data/checkpoints/<name>/``): sha256 over the names and sha256 of its ``*.json``
  and ``*.safetensors`` files, ``training.json`` (the training log) left out;
* published weights (``museumtok weights add``): their file names, which carry a sha256 prefix, and sizes;
* neither (a codec from a library, a tokenizer built from its arguments): ``None``.

Users: the bench's row fingerprints and the RD cache (:mod:`museumtok.eval`) and the cached latent banks
of ``museumtok.train.entropy_context``. It sits outside :mod:`museumtok.eval` so that training and
entropy-coding code can key caches by it without importing the evaluation package. A checkpoint's
``prior.json`` (:mod:`museumtok.tokenizers.prior`) is one of its ``*.json`` files, so refitting the prior
changes the fingerprint.
File hashes are memoised per process by (path, size, mtime), so asking twice reads the files once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_FILE_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file (memoised while its size and mtime are unchanged)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _FILE_MEMO[key] = h.hexdigest()
    return _FILE_MEMO[key]


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the weight and config files of a checkpoint folder (``training.json`` left out)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors") and f.name != "training.json":
            h.update(f.name.encode())
            h.update(file_sha256(f).encode())
    return h.hexdigest()


def checkpoint_fingerprint(entry) -> str | None:
    """The fingerprint of a registry entry's weights (see the module docstring); None when it has none."""
    p = entry.checkpoint_path
    if p is None and entry.weights:
        from .weights import locate

        h = hashlib.sha256()
        for key in entry.weights:
            f = locate(key)
            files = sorted(x for x in f.iterdir() if x.is_file()) if f is not None and f.is_dir() else [f]
            for x in files:
                h.update(f"{key}:{x.name if x else None}:{x.stat().st_size if x else 0}".encode())
        return h.hexdigest()
    if p is None:
        return None
    return folder_fingerprint(p)


__all__ = ["checkpoint_fingerprint", "folder_fingerprint", "file_sha256"]
