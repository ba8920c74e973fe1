"""Learned image codecs (§5): factorized prior (Ballé et al. 2017), scale hyperprior (Ballé et al. 2018),
mean-scale hyperprior with an autoregressive context model (Minnen et al. 2018)."""
from .autoregressive import ContextConfig, ContextHyperprior
from .factorized import FactorizedConfig, FactorizedPrior
from .hyperprior import HyperpriorConfig, ScaleHyperprior

__all__ = ["ContextConfig", "ContextHyperprior", "FactorizedConfig", "FactorizedPrior", "HyperpriorConfig", "ScaleHyperprior"]
