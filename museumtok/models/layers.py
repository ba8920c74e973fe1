"""Convolutional encoder and decoder shared by VQ-VAE and dVAE (van den Oord et al. 2017; Ramesh et al. 2021).

The building blocks follow the VQ-VAE paper (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete
Representation Learning", NeurIPS 2017, arXiv:1711.00937): strided 4×4 convolutions halve the
resolution, residual blocks are ``ReLU → 3×3 conv → ReLU → 1×1 conv`` added to their input, and the
decoder mirrors the encoder with 4×4 transposed convolutions. The DALL·E dVAE (Ramesh et al., "Zero-Shot
Text-to-Image Generation", ICML 2021, arXiv:2102.12092) uses the same shape of network (with more and
wider blocks), so both models here build on :class:`Encoder` and :class:`Decoder`.

The learned codecs of §5 (GDN/IGDN, 5×5 strided transforms) have their own layers in
:mod:`museumtok.codecs.layers`.

A downsampling factor f = 2^L takes L strided stages; ``channels`` gives the width at each
resolution, from full resolution (``channels[0]``) down to 1/f (``channels[L]``)::

    Encoder (f = 8, L = 3)
    x (B, 3, S, S) ─conv3×3─▶ (B, c0, S, S)
      ─down─▶ (B, c1, S/2, S/2) ─res×n─▶ ─down─▶ (B, c2, S/4, S/4) ─res×n─▶
      ─down─▶ (B, c3, S/8, S/8) ─res×n─▶ ReLU ─conv1×1─▶ z_e (B, D, S/8, S/8)

    Decoder: the mirror image
    z_q (B, D, h, w) ─conv3×3─▶ (B, c3, h, w) ─res×n─▶ ─up─▶ (B, c2, 2h, 2w) ─res×n─▶ … ─up─▶
      (B, c0, f·h, f·w) ─ReLU─conv3×3─▶ x̂ (B, 3, f·h, f·w)

There is no normalisation layer: the paper's blocks have none, and with batches of a few crops on a
CPU GroupNorm costs time without helping at this size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..quantize.output import QuantizerOutput


def num_levels(f: int) -> int:
    """L = log2 f for a downsampling factor f ∈ {2, 4, 8, 16, …}; clear error otherwise."""
    L = int(round(math.log2(f))) if f > 0 else -1
    if f < 2 or 2**L != f:
        raise ValueError(f"downsampling factor f must be a power of two ≥ 2 (e.g. 4, 8, 16), got {f}")
    return L


def level_channels(f: int, channels: Sequence[int]) -> list[int]:
    """Widths c_0 … c_L for the L+1 resolutions of factor f; the last given width repeats if too few."""
    L = num_levels(f)
    ch = [int(c) for c in channels]
    if not ch:
        raise ValueError("channels must list at least one width")
    return [ch[min(i, len(ch) - 1)] for i in range(L + 1)]


class ResBlock(nn.Module):
    """x + conv1×1(ReLU(conv3×3(ReLU(x)))), the residual block of VQ-VAE (arXiv:1711.00937, §4.1)."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(channels // 2, 1)
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x + self.block(x)


class Encoder(nn.Module):
    """x (B, 3, S, S) -> (B, out_channels, S/f, S/f); ``out_channels=None`` ends at the ReLU features."""

    def __init__(self, f: int = 8, channels: Sequence[int] = (32, 64, 128), num_res: int = 1,
                 out_channels: int | None = 64, in_channels: int = 3):
        super().__init__()
        ch = level_channels(f, channels)
        L = num_levels(f)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 3, padding=1)]
        roles: list[tuple] = [("in",)]              # what each layer does, for growing f (VQVAE.grow_from)
        for i in range(L):
            if i > 0:
                layers.append(nn.ReLU())
                roles.append(("relu", i))
            layers.append(nn.Conv2d(ch[i], ch[i + 1], 4, stride=2, padding=1))  # halves H and W
            layers += [ResBlock(ch[i + 1]) for _ in range(num_res)]
            roles += [("down", i)] + [("res", i, j) for j in range(num_res)]
        layers.append(nn.ReLU())
        roles.append(("relu", L))
        if out_channels is not None:  # None: stop at the ReLU features (B, c_L, S/f, S/f)
            layers.append(nn.Conv2d(ch[L], out_channels, 1))
            roles.append(("out",))
        self.net = nn.Sequential(*layers)
        self.roles = roles
        self.f = f
        self.out_channels = out_channels if out_channels is not None else ch[L]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.f or x.shape[-2] % self.f:
            raise ValueError(f"image sides {tuple(x.shape[-2:])} must be multiples of f={self.f}")
        return self.net(x)


class Decoder(nn.Module):
    """z (B, in_channels, h, w) -> x̂ (B, 3, f·h, f·w), unbounded (the losses compare it with x in [0, 1])."""

    def __init__(self, f: int = 8, channels: Sequence[int] = (32, 64, 128), num_res: int = 1,
                 in_channels: int = 64, out_channels: int = 3):
        super().__init__()
        ch = level_channels(f, channels)
        L = num_levels(f)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch[L], 3, padding=1)]
        roles: list[tuple] = [("in",)]              # what each layer does, for growing f (VQVAE.grow_from)
        for i in reversed(range(L)):
            layers += [ResBlock(ch[i + 1]) for _ in range(num_res)]
            layers += [nn.ReLU(), nn.ConvTranspose2d(ch[i + 1], ch[i], 4, stride=2, padding=1)]  # doubles H, W
            roles += [("res", i, j) for j in range(num_res)] + [("relu", i), ("up", i)]
        layers += [nn.ReLU(), nn.Conv2d(ch[0], out_channels, 3, padding=1)]
        roles += [("relu", -1), ("out",)]
        self.net = nn.Sequential(*layers)
        self.roles = roles

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class AutoencoderOutput:
    """What a discrete autoencoder's forward pass returns (VQ-VAE and dVAE alike)."""

    x_hat: torch.Tensor                    # (B, 3, S, S) reconstruction, in [0, 1] up to clamping
    z_e: torch.Tensor                      # (B, ·, h, w) encoder output before quantization
    quant: QuantizerOutput                 # z_q, indices (B, h, w), quantizer losses and usage stats
    loss: torch.Tensor                     # scalar: reconstruction + every quantizer term
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # each term, "recon" included


class DiscreteAutoencoderMixin:
    """What VQ-VAE and dVAE share around their different quantizers (``self.encoder``,
    ``self.quantizer``, ``self.decoder`` and a ``self.config`` dataclass with ``f`` and ``codebook_size``)."""

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [0, 1] -> z_e (B, ·, S/f, S/f): what the quantizer reads."""
        return self.encoder(to_signed(x))

    def quantize(self, z_e: torch.Tensor) -> QuantizerOutput:
        """z_e -> z_q (straight-through), indices k (B, h, w), the quantizer's losses and usage stats."""
        return self.quantizer(z_e)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) -> x̂ (B, 3, f·h, f·w), in [0, 1] up to clamping."""
        return to_unit(self.decoder(z_q))

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        z_e = self.encode(x)                          # (B, ·, h, w)
        q = self.quantize(z_e)                        # q.z_q (B, D, h, w), q.indices (B, h, w)
        x_hat = self.decode(q.z_q)                    # (B, 3, S, S)
        recon = F.mse_loss(x_hat, x)                  # ‖x − x̂‖², per pixel
        losses = {"recon": recon, **q.losses}
        return AutoencoderOutput(x_hat=x_hat, z_e=z_e, quant=q, loss=recon + q.loss, losses=losses)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [0, 1] -> token indices (B, S/f, S/f), int64 (eval mode: no EMA update, no noise)."""
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
        from dataclasses import asdict

        return asdict(self.config)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> [-1, 1], the range the networks see."""
    return x * 2 - 1


def to_unit(y: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network output -> [0, 1] pixels (not clamped, so the loss keeps its gradient)."""
    return (y + 1) / 2
