"""Tokenizer networks (§4–5): the shared conv encoder/decoder, VQ-VAE, the DALL·E dVAE, VQ-GAN, MaskGIT,
space-time, any-M, multi-scale, pooling, Resampler and TokenLearner models. The learned codecs of §5
(Ballé et al. 2017/2018, Minnen et al. 2018, Entroformer, HiFiC) are in :mod:`museumtok.codecs.learned`."""
from .dvae import DVAE, DVAEConfig
from .layers import AutoencoderOutput, Decoder, Encoder, ResBlock
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["DVAE", "DVAEConfig", "AutoencoderOutput", "Decoder", "Encoder", "ResBlock", "VQVAE", "VQVAEConfig"]
