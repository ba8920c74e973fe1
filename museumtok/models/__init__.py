"""Neural tokenizer models (§4.3–4.4): a shared conv encoder/decoder, VQ-VAE and the DALL·E dVAE."""
from .dvae import DVAE, DVAEConfig
from .layers import AutoencoderOutput, Decoder, Encoder, ResBlock
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["DVAE", "DVAEConfig", "AutoencoderOutput", "Decoder", "Encoder", "ResBlock", "VQVAE", "VQVAEConfig"]
