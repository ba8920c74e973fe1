"""The preamble every tab runs before its own work: one function, one set of messages.

    p = prepare(source, "vqvae-f8-k1024", 256, lang="vi", encode=True)
    if isinstance(p, str):          # what is wrong, in the visitor's language: show it, do nothing else
        return Result(error=p)
    p.image, p.model, p.M, p.tokens  # the loaded artwork, the tokenizer, the checked M, its tokens

The steps, in order, each with the message it gives instead of raising (so one visitor's broken file
never takes the app down for the next):

1. a source is given                      → "Upload an image or pick an artwork first." (``need_image``)
2. the name is in :mod:`museumtok.registry` → "unknown tokenizer or codec 'x'; known: …"
3. it is of the kind the tab needs        → "x is a codec, not a tokenizer." (or the tab's own sentence)
4. the file is a usable image             → "Cannot use this file: …" (``cannot_use``, the reason translated)
5. the checkpoint / weights load          → the registry's "checkpoint … is missing; train it with …"
6. M is one the tokenizer produces        → "… cannot produce M=100 tokens; choose one of 64, 256, 1024"
7. (``encode=True``) the image is encoded into M tokens.

Pure: plain Python in and out; ``tests/test_app_prepare.py`` feeds it every bad input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import registry
from ..data.images import ImageLoadError, LoadedImage, load_image
from ..tokenizers.base import UnsupportedM
from .i18n import error_text, t as tr


@dataclass
class Prepared:
    entry: registry.RegistryEntry     # the registry entry of the chosen name
    loaded: LoadedImage               # the visitor's image (RGB) and what loading did to it
    model: Any                        # the tokenizer or codec, as registry.load built it
    M: int | None = None              # the checked token count (None for a codec)
    tokens: Any = None                # the TokenizedImage when prepare(..., encode=True)

    @property
    def image(self):
        return self.loaded.image


def no_source(source) -> bool:
    """True when nothing was picked or uploaded (None, or an empty path)."""
    return source is None or (isinstance(source, str) and not source.strip())


def prepare(source, name: str, M: int | None = None, *, kind: str = "tokenizer", learned: bool = False,
            wrong_kind: str | None = None, encode: bool = False, lang: str = "en",
            progress: Callable[[float, str], None] | None = None) -> Prepared | str:
    """Check and load everything a tab needs for ``source`` under the registry entry ``name``.

    ``kind``: the entry kind the tab works with ("tokenizer": M is checked, "codec": M is ignored);
    ``learned``: the entry must be a trained network (the Codecs tab: not JPEG); ``wrong_kind``: the
    tab's own sentence when the entry is of another kind; ``progress(fraction, text)`` is told when a
    checkpoint is loaded and when the image is encoded. Returns a :class:`Prepared`, or the one message
    (in ``lang``) that says what is wrong.
    """
    say = progress or (lambda f, d: None)
    if no_source(source):
        return tr("need_image", lang)
    try:
        entry = registry.get(name)
    except KeyError as err:
        return str(err)
    if entry.kind != kind or (learned and not entry.learned):
        if wrong_kind is not None:
            return wrong_kind
        return tr("is_codec" if entry.kind == "codec" else "not_tokenizer", lang, name=name)
    try:
        loaded = load_image(source)
    except ImageLoadError as err:
        return tr("cannot_use", lang, why=error_text(err, lang))
    try:
        if not registry.is_loaded(name):
            say(0.1, tr("loading_tok", lang, name=name))
        model = registry.load(name)
        Mv = model.check_M(M) if kind == "tokenizer" else None
        tokens = None
        if encode:
            say(0.4, tr("encoding", lang))
            tokens = model.encode(loaded.image, Mv)
    except UnsupportedM as err:
        return error_text(err, lang)
    except (registry.CheckpointMissing, FileNotFoundError) as err:
        return str(err)
    return Prepared(entry, loaded, model, Mv, tokens)
