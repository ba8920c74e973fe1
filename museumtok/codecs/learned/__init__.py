"""Learned codecs with real bitstreams (§5): transforms trained end to end with an entropy model.

One file per way of modelling P(ŷ), as CompressAI's ``compressai.models`` does; their layers are in
:mod:`museumtok.codecs.layers`, their entropy models and range coder in :mod:`museumtok.entropy`::

    base.py         LearnedCodec: bitstream header, padding, float64 decoder side, the Codec contract
    factorized.py   FactorizedPrior: one density per channel (Ballé et al., ICLR 2017), §5.1
    hyperprior.py   ScaleHyperprior: σ from side information ẑ (Ballé et al., ICLR 2018), §5.2
    context.py      ContextHyperprior: mean-scale hyperprior + mask-A context (Minnen et al., NeurIPS 2018), §5.2
    entroformer.py  ContextualHyperprior: a transformer (or mask-A) context on a frozen hyperprior
                    (Qian et al., ICLR 2022), §5.3
    hific.py        HiFiC's conditional discriminator and GAN losses for the codec's decoder
                    (Mentzer et al., NeurIPS 2020), §5.3
"""
from .context import ContextConfig, ContextHyperprior
from .factorized import FactorizedConfig, FactorizedPrior
from .hyperprior import HyperpriorConfig, ScaleHyperprior

__all__ = ["ContextConfig", "ContextHyperprior", "FactorizedConfig", "FactorizedPrior", "HyperpriorConfig",
           "ScaleHyperprior"]
