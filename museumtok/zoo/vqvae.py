"""§4.3–4.4: learned vector-quantized tokenizers, the DALL·E dVAE and VQ-VAE."""
from ..registry import RegistryEntry, register

#: with f = 8: 64 px -> 8×8 tokens, 128 px -> 16×16, 256 px -> 32×32
M_F8 = (64, 256, 1024)

register(RegistryEntry(
    name="dvae-f8-k1024", kind="tokenizer",
    target="museumtok.tokenizers.autoencoder:DVAETokenizer",
    description="dVAE (Ramesh et al. 2021, DALL·E): Gumbel-softmax over K=1024 codes, f=8",
    chapter="4.4", supported_M=M_F8, default_M=256, checkpoint="dvae-f8-k1024",
))
register(RegistryEntry(
    name="vqvae-f8-k1024", kind="tokenizer",
    target="museumtok.tokenizers.autoencoder:VQVAETokenizer",
    description="VQ-VAE (van den Oord et al. 2017): conv encoder/decoder, f=8, K=1024 EMA codebook",
    chapter="4.3", supported_M=M_F8, default_M=256, checkpoint="vqvae-f8-k1024",
    llm_adapter="sft-smollm2-vqvae-f8-k1024",      # §7 guide adapter, used when bundled
))
register(RegistryEntry(
    name="vqvae-f16-k1024", kind="tokenizer",
    target="museumtok.tokenizers.autoencoder:VQVAETokenizer",
    description="VQ-VAE at f=16: 256 tokens for a 256 px image (the literature's standard rate), K=1024",
    chapter="4.3", supported_M=(16, 64, 256), default_M=256, checkpoint="vqvae-f16-k1024",
))
