"""Image tokenizers behind one contract (see :mod:`museumtok.tokenizers.base`)."""
from .base import TokenizedImage, Tokenizer, UnsupportedM

__all__ = ["TokenizedImage", "Tokenizer", "UnsupportedM"]
