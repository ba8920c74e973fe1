"""Codecs with real bitstreams: image -> bytes -> image (§3, §5). Laid out by their maths, as CompressAI is::

    base.py            the Codec contract (EncodedImage, BudgetResult)
    pillow.py          classical transform codecs through Pillow: JPEG, WebP (§3)
    layers.py          the learned codecs' layers: GDN / IGDN, 5×5 strided transforms, mask-A conv
    learned/           learned codecs: factorized prior, scale hyperprior, mask-A context, Entroformer
                       context, HiFiC's GAN decoder (§5.1–5.3)
    compressai_zoo.py  CompressAI's published pretrained models behind the same contract (as
                       ``compressai.zoo`` sits beside ``compressai.models``)

Their entropy models (factorized, Gaussian conditional) and range coder are in :mod:`museumtok.entropy`;
:mod:`museumtok.models` holds the tokenizer networks only.
"""
from .base import BudgetResult, Codec, EncodedImage
from .pillow import PillowCodec

__all__ = ["BudgetResult", "Codec", "EncodedImage", "PillowCodec"]
