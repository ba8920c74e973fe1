"""Codecs with real bitstreams: Pillow's JPEG and WebP here; learned codecs in ``museumtok.models``."""
from .base import BudgetResult, Codec, EncodedImage
from .pillow import PillowCodec

__all__ = ["BudgetResult", "Codec", "EncodedImage", "PillowCodec"]
