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
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..quantize.gumbel import GumbelQuantizer
from ..quantize.output import QuantizerOutput
from .layers import AutoencoderOutput, Decoder, Encoder, level_channels, to_signed, to_unit


@dataclass
class DVAEConfig:
    f: int = 8                                   # downsampling factor: an S×S image gives (S/f)² tokens
    channels: tuple = (32, 64, 128, 128)         # widths at full res, 1/2, 1/4, …, 1/f (last one repeats)
    num_res: int = 1                             # residual blocks per resolution below the input one
    codebook_size: int = 1024                    # K, the number of codes (logits per position)
    dim: int = 32                                # D, the dimension of each code e_k fed to the decoder
    tau: float = 1.0                             # τ, Gumbel-softmax temperature (the trainer anneals it)
    kl_weight: float = 5e-4                      # λ_KL, the weight of KL(q ‖ uniform prior)
    hard: bool = True                            # straight-through one-hot samples in training (False: soft)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # JSON gives lists back


class DVAE(nn.Module, PyTorchModelHubMixin):
    """Encoder → GumbelQuantizer → Decoder; ``save_pretrained`` / ``from_pretrained`` (config.json + safetensors)."""

    def __init__(self, config: DVAEConfig = None):
        super().__init__()
        if isinstance(config, dict):
            config = DVAEConfig(**config)
        self.config = config = config or DVAEConfig()
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        hidden = level_channels(config.f, config.channels)[-1]
        self.encoder = Encoder(config.f, config.channels, config.num_res, out_channels=None)  # (B, C, h, w)
        self.quantizer = GumbelQuantizer(hidden, config.codebook_size, config.dim, tau=config.tau,
                                         kl_weight=config.kl_weight, hard=config.hard)
        self.decoder = Decoder(config.f, config.channels, config.num_res, in_channels=config.dim)

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def tau(self) -> float:
        return float(self.quantizer.tau)

    @tau.setter
    def tau(self, value: float) -> None:
        self.quantizer.tau = float(value)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [0, 1] -> h (B, C, S/f, S/f), the features the logits are read from."""
        return self.encoder(to_signed(x))

    def quantize(self, h: torch.Tensor) -> QuantizerOutput:
        """h -> Gumbel-softmax codes z_q (B, D, h, w), argmax indices (B, h, w), the KL term, usage stats."""
        return self.quantizer(h)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) -> x̂ (B, 3, f·h, f·w), in [0, 1] up to clamping."""
        return to_unit(self.decoder(z_q))

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        h = self.encode(x)                            # (B, C, h, w)
        q = self.quantize(h)                          # q.z_q (B, D, h, w), q.indices (B, h, w)
        x_hat = self.decode(q.z_q)                    # (B, 3, S, S)
        recon = F.mse_loss(x_hat, x)
        losses = {"recon": recon, **q.losses}
        return AutoencoderOutput(x_hat=x_hat, z_e=h, quant=q, loss=recon + q.loss, losses=losses)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [0, 1] -> argmax token indices (B, S/f, S/f), int64 (no noise)."""
        was = self.training
        self.eval()
        try:
            return self.quantize(self.encode(x)).indices
        finally:
            self.train(was)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, h, w) -> x̂ (B, 3, f·h, f·w) clamped to [0, 1]."""
        z_q = self.quantizer.indices_to_codes(indices.long())  # (B, D, h, w)
        return self.decode(z_q).clamp(0, 1)

    def config_dict(self) -> dict:
        return asdict(self.config)
