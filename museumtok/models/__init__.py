"""Learned image codecs (§5): factorized prior (Ballé et al. 2017) and scale hyperprior (Ballé et al. 2018)."""
from .factorized import FactorizedConfig, FactorizedPrior
from .hyperprior import HyperpriorConfig, ScaleHyperprior

__all__ = ["FactorizedConfig", "FactorizedPrior", "HyperpriorConfig", "ScaleHyperprior"]
