"""museumtok: learning, showing and measuring how images are compressed into tokens an LLM reads.

    import museumtok
    tok = museumtok.load("lloyd-patch-k1024")
    t = tok.encode("painting.jpg", M=256)
    x_hat = tok.decode(t)

See :mod:`museumtok.registry` for every tokenizer and codec.
"""
from .registry import REGISTRY, entries, get, load, names

__version__ = "0.1.0"
__all__ = ["REGISTRY", "entries", "get", "load", "names", "__version__"]
