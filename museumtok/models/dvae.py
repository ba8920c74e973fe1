"""dVAE: the discrete VAE of DALL·E, Ramesh et al., "Zero-Shot Text-to-Image Generation", ICML 2021, arXiv:2102.12092 (§4.4).

Instead of a nearest-neighbour lookup, the encoder outputs logits over the K codes at every
position; training draws a Gumbel-softmax sample (Jang et al. 2017; Maddison et al. 2017) with a
temperature τ that is annealed towards 0, and the decoder sees the sample's mixture of codes. A KL
term pulls the posterior towards the uniform prior over K codes (the evidence lower bound of the
paper's stage 1). At inference the token is the argmax of the logits.

    x (B, 3, S, S) ──Encoder──▶ h (B, C, S/f, S/f) ──1×1 conv──▶ logits (B, K, S/f, S/f)
                                                                   │  argmax ──▶ k (B, S/f, S/f)   tokens
                               y = softmax((logits + g) / τ), g ~ Gumbel(0, 1)
                               (hard: one-hot in the forward pass, soft gradient)
                                                                   ▼
    x̂ (B, 3, S, S) ◀──Decoder── z_q = Σ_k y_k e_k (B, D, S/f, S/f)

    L = ‖x − x̂‖²  +  λ_KL · KL(q(k | x) ‖ U(K))

DALL·E used a logit-Laplace likelihood, 8192 codes at f = 8 and τ annealed from 1 to 1/16; here the
reconstruction term is the same mean squared error as the VQ-VAE's so the two are comparable, and the
encoder and decoder are the very same modules (:mod:`museumtok.models.layers`). The Gumbel-softmax,
the hard/soft paths and the KL term live in :class:`museumtok.quantize.gumbel.GumbelQuantizer`.
"""
from dataclasses import dataclass

from torch import nn

from ..checkpoint import HubMixin, strip_metadata
from ..quantize.gumbel import GumbelQuantizer
from .layers import Decoder, DiscreteAutoencoderMixin, Encoder, level_channels


@dataclass
class DVAEConfig:
    f: int = 8                                   # downsampling factor: an S×S image gives (S/f)² tokens
    channels: tuple = (32, 64, 128, 128)         # widths at full res, 1/2, 1/4, …, 1/f (last one repeats)
    num_res: int = 1                             # residual blocks per resolution below the input one
    codebook_size: int = 1024                    # K, the number of codes (logits per position)
    dim: int = 32                                # D, the dimension of each code e_k fed to the decoder
    tau: float = 1.0                             # τ, Gumbel-softmax temperature (the trainer anneals it)
    kl_weight: float = 5e-4                      # λ_KL, the weight of KL(q ‖ uniform prior)
    hard: bool = False                           # False: the relaxed (soft) sample, as DALL·E trains; True: straight-through one-hot
    usage_weight: float = 0.0                    # weight of KL(batch-average q ‖ uniform), an anti-collapse term
                                                 # not in DALL·E (0: the paper's loss); see benchmarks/dvae_usage.py

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # JSON gives lists back


class DVAE(DiscreteAutoencoderMixin, nn.Module, HubMixin):
    """Encoder → GumbelQuantizer → Decoder; ``save_pretrained`` / ``from_pretrained`` (config.json + safetensors)."""

    def __init__(self, config: DVAEConfig = None):
        super().__init__()
        if isinstance(config, dict):
            config = DVAEConfig(**strip_metadata(config))
        self.config = config = config or DVAEConfig()
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        hidden = level_channels(config.f, config.channels)[-1]
        self.encoder = Encoder(config.f, config.channels, config.num_res, out_channels=None)  # (B, C, h, w)
        self.quantizer = GumbelQuantizer(hidden, config.codebook_size, config.dim, tau=config.tau,
                                         kl_weight=config.kl_weight, hard=config.hard,
                                         usage_weight=config.usage_weight)
        self.decoder = Decoder(config.f, config.channels, config.num_res, in_channels=config.dim)

    @property
    def tau(self) -> float:
        return float(self.quantizer.tau)

    @tau.setter
    def tau(self, value: float) -> None:
        self.quantizer.tau = float(value)
