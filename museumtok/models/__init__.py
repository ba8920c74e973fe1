"""Neural models: discrete tokenizers (§4.3–4.4: a shared conv encoder/decoder, VQ-VAE, the DALL·E dVAE)
and learned codecs (§5: factorized prior, Ballé et al. 2017; scale hyperprior, Ballé et al. 2018;
mean-scale hyperprior with an autoregressive context model, Minnen et al. 2018)."""
from .autoregressive import ContextConfig, ContextHyperprior
from .dvae import DVAE, DVAEConfig
from .factorized import FactorizedConfig, FactorizedPrior
from .hyperprior import HyperpriorConfig, ScaleHyperprior
from .layers import AutoencoderOutput, Decoder, Encoder, ResBlock
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["DVAE", "DVAEConfig", "AutoencoderOutput", "Decoder", "Encoder", "ResBlock", "VQVAE", "VQVAEConfig",
           "ContextConfig", "ContextHyperprior", "FactorizedConfig", "FactorizedPrior", "HyperpriorConfig",
           "ScaleHyperprior"]
