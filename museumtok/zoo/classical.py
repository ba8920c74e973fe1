"""§3: classical codecs (Pillow) used as baselines at equal bits."""
from ..registry import RegistryEntry, register

register(RegistryEntry(
    name="jpeg", kind="codec", target="museumtok.codecs.pillow:PillowCodec",
    description="JPEG (Pillow, optimized Huffman tables): the classical baseline", chapter="3",
    kwargs={"fmt": "JPEG"},
))
register(RegistryEntry(
    name="webp", kind="codec", target="museumtok.codecs.pillow:PillowCodec",
    description="WebP (Pillow, method 6): a modern classical baseline", chapter="3",
    kwargs={"fmt": "WEBP"},
))
