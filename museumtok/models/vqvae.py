"""VQ-VAE: van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017, arXiv:1711.00937 (§4.3).

A convolutional encoder maps the image to a grid of vectors z_e; each vector is replaced by its
nearest codebook entry e_k (:class:`museumtok.quantize.vq.VectorQuantizer`), and a decoder maps the
grid of codes back to pixels. The index k of each position is the image's token: an S×S image with
downsampling f gives (S/f)² tokens of log2 K bits each.

    x (B, 3, S, S) ──Encoder──▶ z_e (B, D, S/f, S/f) ──nearest e_k──▶ k (B, S/f, S/f)      tokens
                                                              │
                                   z_q = e_k (straight-through)▼
    x̂ (B, 3, S, S) ◀──Decoder── z_q (B, D, S/f, S/f)

The loss has the paper's three terms (eq. 3), with sg[·] the stop-gradient:

    L = ‖x − x̂‖²  +  ‖sg[z_e] − e‖²  +  β‖z_e − sg[e]‖²
        reconstruction   codebook          commitment (β = 0.25)

With ``ema=True`` the codebook term is replaced by exponential moving averages of the assigned
encoder outputs (the paper's Appendix A.1; the review's Appendix B, Alg. 1 with Laplace smoothing),
and the codebook starts from k-means on the first batch with unused codes restarted from current
encoder outputs — the quantizer owns all of this; the model only wires it between encoder and decoder.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checkpoint import HubMixin, strip_metadata
from ..quantize.vq import VectorQuantizer, nearest_code
from .layers import Decoder, DiscreteAutoencoderMixin, Encoder


@dataclass
class VQVAEConfig:
    f: int = 8                                   # downsampling factor: an S×S image gives (S/f)² tokens
    channels: tuple = (32, 64, 128, 128)         # widths at full res, 1/2, 1/4, …, 1/f (last one repeats)
    num_res: int = 1                             # residual blocks per resolution below the input one
    codebook_size: int = 1024                    # K, the number of codes; each token is log2 K bits
    dim: int = 32                                # D, the dimension of z_e and of each code e_k
    beta: float = 0.25                           # β, the weight of the commitment loss
    ema: bool = True                             # EMA codebook updates instead of the codebook loss
    decay: float = 0.99                          # γ, the EMA decay
    eps: float = 1e-5                            # ε, Laplace smoothing of the EMA cluster sizes
    kmeans_init: bool = True                     # initialise the codebook by k-means on the first batch
    restart_dead_after: int = 50                 # restart a code unused for this many steps (0: never)
    cosine: bool = False                         # l2-normalise z_e and the codes (cosine-similarity lookup)
    usage_weight: float = 0.0                    # weight of KL(batch-average soft assignment ‖ uniform), an
                                                 # anti-collapse term not in the paper (0: the paper's loss)
    usage_tau: float = 1.0                       # τ of those soft assignments, in units of the mean nearest distance

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # JSON gives lists back


class VQVAE(DiscreteAutoencoderMixin, nn.Module, HubMixin):
    """Encoder → VectorQuantizer → Decoder; ``save_pretrained`` / ``from_pretrained`` (config.json + safetensors)."""

    def __init__(self, config: VQVAEConfig = None):
        super().__init__()
        if isinstance(config, dict):
            config = VQVAEConfig(**strip_metadata(config))
        self.config = config = config or VQVAEConfig()
        self._hub_mixin_config = config  # what save_pretrained writes to config.json
        self.encoder = Encoder(config.f, config.channels, config.num_res, out_channels=config.dim)
        self.quantizer = VectorQuantizer(
            config.dim, config.codebook_size, beta=config.beta, ema=config.ema, decay=config.decay,
            eps=config.eps, kmeans_init=config.kmeans_init, restart_dead_after=config.restart_dead_after,
            cosine=config.cosine, usage_weight=config.usage_weight, usage_tau=config.usage_tau)
        self.decoder = Decoder(config.f, config.channels, config.num_res, in_channels=config.dim)

    @torch.no_grad()
    def grow_from(self, smaller: "VQVAE") -> dict[str, int]:
        """Warm start from a trained VQ-VAE with a smaller f (e.g. f8 → f16): same widths, D and K.

        Encoder levels 0 … L_s−1, the decoder's matching up-sampling levels, both 1×1/3×3 end convolutions
        and the whole codebook (with its EMA statistics) are copied; only the extra levels of the larger f
        (one more down- and up-sampling stage at the lowest resolution) start from random weights. The
        grown model is not the small one (the new stages sit in the middle), but its features, codes and
        pixel decoder start trained, which is what saves CPU time. Returns how many tensors were copied
        and how many were left as initialised.
        """
        copied = kept = 0
        for big, small in ((self.encoder, smaller.encoder), (self.decoder, smaller.decoder)):
            donors = dict(zip(small.roles, small.net))                   # role -> trained layer
            for role, layer in zip(big.roles, big.net):
                sd, donor = layer.state_dict(), donors.get(role)
                if not sd:
                    continue                                             # ReLU
                dsd = donor.state_dict() if donor is not None else {}
                if dsd.keys() == sd.keys() and all(dsd[k].shape == v.shape for k, v in sd.items()):
                    layer.load_state_dict(dsd)
                    copied += len(sd)
                else:
                    kept += len(sd)
        q = smaller.quantizer.state_dict()
        if all(q[k].shape == v.shape for k, v in self.quantizer.state_dict().items()):
            self.quantizer.load_state_dict(q)
            copied += len(q)
        else:
            raise ValueError(f"codebooks differ: {smaller.quantizer.codebook.shape} vs {self.quantizer.codebook.shape}")
        return {"copied": copied, "initialised": kept}

    @torch.no_grad()
    def encode_indices_restricted(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Tokens when only the codes ``keep`` (K',) may be used: nearest among them, as full-codebook indices.

        A cheap way to see what a smaller K would keep (the other codes are simply forbidden; a model
        trained with K' codes would do better). x (B, 3, S, S) -> (B, S/f, S/f).
        """
        was = self.training
        self.eval()
        try:
            z_e = self.encode(x)                                             # (B, D, h, w)
        finally:
            self.train(was)
        b, _, h, w = z_e.shape
        z = rearrange(z_e, "b d h w -> (b h w) d")                           # (N, D)
        if self.config.cosine:
            z = F.normalize(z, dim=1)
        keep = keep.long().to(z.device)
        j = nearest_code(z, self.quantizer.codebook[keep])                   # (N,) into keep
        return keep[j].view(b, h, w)
