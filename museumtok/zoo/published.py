"""Published models beside ours: CompressAI's pretrained codecs (§5.1–5.2) and aMUSEd's VQ-GAN (§4.5).

Each entry names the published file it reads (``weights``, keys of :data:`museumtok.weights.KNOWN`)
and stays hidden (``available`` False, with a one-line reason in ``museumtok list``) until that file is
in the torch hub cache or the Hugging Face cache; ``museumtok weights add FILE`` puts it there. Nothing
is downloaded. Names keep CompressAI's quality index, so ``compressai-bmshj2018-hyperprior-q4`` sits
on the same λ as our CPU-trained ``hyperprior-q4``.
"""
from ..registry import RegistryEntry, register
from ..weights import COMPRESSAI_FILES

ARCH_TEXT = {
    "bmshj2018-factorized": ("factorized prior (Ballé et al. 2018)", "5.1"),
    "bmshj2018-hyperprior": ("scale hyperprior (Ballé et al. 2018)", "5.2"),
    "mbt2018-mean": ("mean-scale hyperprior (Minnen et al. 2018), no context model", "5.2"),
    "cheng2020-anchor": ("Cheng et al. 2020 anchor: residual blocks + autoregressive context, sequential decoding", "5.2"),
}

for (arch, q), pub in COMPRESSAI_FILES.items():
    text, chapter = ARCH_TEXT[arch]
    register(RegistryEntry(
        name=f"compressai-{arch}-q{q}", kind="codec", target="museumtok.codecs.compressai_zoo:CompressAICodec",
        description=f"CompressAI's pretrained {text}, MSE, quality {q} (published weights)",
        chapter=chapter, kwargs={"arch": arch, "quality": q}, weights=(pub.key,), requires=("compressai",),
    ))

register(RegistryEntry(
    name="amused-vqgan-f16", kind="tokenizer", target="museumtok.tokenizers.diffusers_vq:published_vq_tokenizer",
    description="aMUSEd's published VQ-GAN (Patil et al. 2024), f=16 (256 px -> 256 tokens), through diffusers' VQModel",
    chapter="4.5", supported_M=(64, 256, 1024), default_M=256,
    kwargs={"weights_key": "amused-256-vqvae", "sizes": (128, 256, 512)},
    weights=("amused-256-vqvae",), requires=("diffusers",),
))
