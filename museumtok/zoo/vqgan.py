"""§4.5: VQ-GAN tokens (the VQ-VAE tokenizer with a decoder trained adversarially)."""
from ..registry import RegistryEntry, register
from .vqvae import M_F8

register(RegistryEntry(
    name="vqgan-f8-k1024", kind="tokenizer",
    target="museumtok.tokenizers.autoencoder:VQGANTokenizer",
    description="VQ-GAN (Esser et al. 2021): vqvae-f8-k1024's tokens, decoder fine-tuned with PatchGAN + MS-SSIM",
    chapter="4.5", supported_M=M_F8, default_M=256, checkpoint="vqgan-f8-k1024",
    # the encoder and codebook are vqvae-f8-k1024's, unchanged (only the decoder was fine-tuned): the same
    # tokens, so the guide reads them with the VQ-VAE's vocabulary and adapter (tests/test_guide.py checks)
    llm_adapter="sft-smollm2-vqvae-f8-k1024", llm_vocab="vqvae-f8-k1024",
))
