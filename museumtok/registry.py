"""One registry: tokenizer and codec name -> class, checkpoint, the M values it supports, chapter; and the
generators (MaskGIT and its autoregressive twin, kind "generator") that model a tokenizer's tokens.

The app's menus, the CLI, the notebooks and the benchmarks all read this table; nothing else
lists tokenizers. Entries are declared in ``museumtok/zoo/*.py`` (one file per family, imported
automatically on first use). Checkpoints live in ``data/checkpoints/<name>/`` (config.json, model.safetensors
and a README.md model card) and are loaded only when :func:`load` is called. Published models
(CompressAI's codecs, aMUSEd's VQ-GAN: ``zoo/published.py``) name the files they read in ``weights``
(see :mod:`museumtok.weights`) and stay hidden, with ``unavailable_reason`` saying what is missing,
until those files are in the torch hub or Hugging Face cache.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import CHECKPOINT_DIR


class UnknownTokenizer(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is for people
        return self.args[0]


class CheckpointMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    kind: str                       # "tokenizer" (discrete tokens), "codec" (bitstream) or "generator" (a model
                                    # of a tokenizer's tokens: MaskGIT, its AR twin; never in the tokenizer menus)
    target: str                     # "module:Class"
    description: str                # one line, shown in the app and `museumtok list`
    chapter: str                    # the review's section, e.g. "4.1"
    supported_M: tuple[int, ...] = ()   # token counts offered (empty for codecs)
    default_M: int | None = None
    checkpoint: str | None = None   # folder name under data/checkpoints, or None
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments when no checkpoint
    llm_adapter: str | None = None  # §7 SFT adapter folder under data/checkpoints teaching the embedded LLM these tokens
    llm_vocab: str | None = None    # the entry whose LLM vocabulary these tokens are (same encoder and codebook)
    weights: tuple[str, ...] = ()   # published files it reads (keys of museumtok.weights.KNOWN); hidden until present
    requires: tuple[str, ...] = ()  # Python packages it imports beyond the core ones (e.g. "compressai")
    tokenizer: str | None = None    # a generator's frozen tokenizer (registry name): it models that one's tokens

    @property
    def checkpoint_path(self) -> Path | None:
        return CHECKPOINT_DIR / self.checkpoint if self.checkpoint else None

    @property
    def available(self) -> bool:
        """True when the entry's checkpoint (if any), published weights and packages are all here."""
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """None when the entry can load; otherwise one line saying what is missing and how to bring it."""
        p = self.checkpoint_path
        if p is not None and not (p / "config.json").is_file():
            return f"checkpoint {p} missing"
        import importlib.util

        if self.tokenizer is not None:
            why = get(self.tokenizer).unavailable_reason
            if why is not None:
                return f"its tokenizer {self.tokenizer}: {why}"
        for pkg in self.requires:
            if importlib.util.find_spec(pkg) is None:
                return f"needs the Python package {pkg} (pip install {pkg})"
        if self.weights:
            from . import weights as W

            for key in self.weights:
                if W.locate(key) is None:
                    return W.missing_reason(key)
        return None

    @property
    def learned(self) -> bool:
        """True for a trained network (bundled checkpoint or published weights), False for e.g. JPEG."""
        return bool(self.checkpoint or self.weights)

    @property
    def m_is_range(self) -> bool:
        """True when M is a continuous knob (offer a slider rather than a menu)."""
        s = self.supported_M
        return len(s) > 8 and list(s) == list(range(s[0], s[-1] + 1))

    @property
    def adapter_path(self) -> Path | None:
        """The LLM adapter's folder when it is on disk (the chat then uses it by default), else None."""
        p = CHECKPOINT_DIR / self.llm_adapter if self.llm_adapter else None
        return p if p is not None and (p / "config.json").is_file() else None

    @property
    def model_card(self) -> Path | None:
        p = self.checkpoint_path
        return p / "README.md" if p else None


REGISTRY: dict[str, RegistryEntry] = {}
_ZOO_LOADED = False


_ZOO_LOCK = threading.RLock()


def _load_zoo() -> None:
    """Import every module of :mod:`museumtok.zoo`, each of which registers its entries.

    Thread-safe: the flag is set only once every module has registered, so a second thread never reads
    a half-filled table (the load test's first requests arrive together and once saw an empty menu)."""
    global _ZOO_LOADED
    if _ZOO_LOADED:
        return
    with _ZOO_LOCK:
        if _ZOO_LOADED:
            return
        import pkgutil

        from . import zoo

        for mod in sorted(m.name for m in pkgutil.iter_modules(zoo.__path__)):
            importlib.import_module(f"{zoo.__name__}.{mod}")
        _ZOO_LOADED = True
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def register(entry: RegistryEntry) -> RegistryEntry:
    if entry.name in REGISTRY and REGISTRY[entry.name] != entry:
        raise ValueError(f"registry name {entry.name!r} registered twice")
    REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> RegistryEntry:
    _load_zoo()
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownTokenizer(f"unknown tokenizer or codec {name!r}; known: {', '.join(REGISTRY)}") from None


def names(kind: str | None = None, available_only: bool = True) -> list[str]:
    _load_zoo()
    return [n for n, e in REGISTRY.items() if (kind is None or e.kind == kind) and (e.available or not available_only)]


def load(name: str):
    """The tokenizer or codec called ``name``, built once per process (thread-safe) and cached. Not a registry
    name: a checkpoint folder, or a Hugging Face Hub id ("owner/name", downloaded first), whose config.json
    names its class (:mod:`museumtok.checkpoint`); loaded afresh each call."""
    _load_zoo()
    if name not in REGISTRY:
        from . import checkpoint as C

        if Path(name).is_dir():
            return C.load_folder(name, _wrappers())
        if C.is_hub_id(name):
            return C.load_folder(C.hub_folder(name), _wrappers())
    entry = get(name)
    with _LOCK:
        if name in _CACHE:
            return _CACHE[name]
        if (entry.weights or entry.requires) and entry.unavailable_reason is not None:
            raise CheckpointMissing(f"{name}: {entry.unavailable_reason}")
        module, cls_name = entry.target.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        if entry.checkpoint:
            path = entry.checkpoint_path
            if not (path / "config.json").is_file():
                raise CheckpointMissing(
                    f"{name}: checkpoint {path} is missing; train it with `museumtok train {name}`"
                )
            obj = cls.from_pretrained(str(path))
            if hasattr(obj, "load_priors"):  # a tokenizer's entropy-coding prior (prior.json), if fitted
                obj.load_priors(path)
        else:
            obj = cls(**entry.kwargs)
        if hasattr(obj, "eval"):
            obj.eval()
        obj.name = name
        _CACHE[name] = obj
        return obj



def _wrappers() -> dict[type, type]:
    """Network class -> the class of the bundled tokenizer that wraps it (VQVAE -> VQVAETokenizer), so that a
    folder loads as what its registry entry would give."""
    _load_zoo()
    out: dict[type, type] = {}
    for e in REGISTRY.values():
        if not e.checkpoint:
            continue
        module, attr = e.target.split(":")
        cls = getattr(importlib.import_module(module), attr)
        if isinstance(getattr(cls, "model_cls", None), type):
            out.setdefault(cls.model_cls, cls)
    return out

def is_loaded(name: str) -> bool:
    """True when :func:`load` has already built ``name`` in this process (the next call is instant)."""
    return name in _CACHE


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def entries(kind: str | None = None) -> list[RegistryEntry]:
    _load_zoo()
    return [e for e in REGISTRY.values() if kind is None or e.kind == kind]
