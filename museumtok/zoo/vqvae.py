"""§4.3–4.4: learned vector-quantized tokenizers, VQ-VAE and the DALL·E dVAE."""
from ..registry import RegistryEntry, register

#: with f = 8: 64 px -> 8×8 tokens, 128 px -> 16×16, 256 px -> 32×32
M_F8 = (64, 256, 1024)

register(RegistryEntry(
    name="vqvae-f8-k1024", kind="tokenizer",
    target="museumtok.tokenizers.vqvae:VQVAETokenizer",
    description="VQ-VAE (van den Oord et al. 2017): conv encoder/decoder, f=8, K=1024 EMA codebook",
    chapter="4.3", supported_M=M_F8, default_M=256, checkpoint="vqvae-f8-k1024",
))
