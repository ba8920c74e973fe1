"""PatchGAN discriminator: Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with Conditional
Adversarial Networks" (pix2pix), CVPR 2017, arXiv:1611.07004 — with the hinge loss used by VQ-GAN (§4.5).

Instead of one real/fake score per image, the discriminator is fully convolutional and outputs a grid
of logits, one per overlapping patch (70×70 px for ``n_layers = 3``); the loss averages over patches,
so it judges local texture and sharpness — exactly what the L2 loss of a VQ-VAE leaves blurry.

    x (B, 3, S, S) ─conv4 s2, LReLU─▶ (B, c, S/2, S/2)
      ─[conv4 s2, BN, LReLU] × (n_layers − 1)─▶ (B, c·2^(n−1), S/2^n, S/2^n)
      ─conv4 s1, BN, LReLU─▶ ─conv4 s1─▶ logits (B, 1, S/2^n − 2, S/2^n − 2)

With S = 256 and n_layers = 3 the output is the pix2pix 30×30 grid. VQ-GAN (Esser et al. 2021) uses
this network with the hinge loss of Lim & Ye 2017 / Miyato et al. 2018:

    L_D = ½ (E[relu(1 − D(x))] + E[relu(1 + D(x̂))])        L_G = −E[D(x̂)]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """The pix2pix ``NLayerDiscriminator``; input in [-1, 1] or [0, 1] (the caller decides), output logits."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be ≥ 1, got {n_layers}")
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")

        def Norm(c):
            return nn.BatchNorm2d(c) if norm == "batch" else nn.Identity()

        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = channels
        for n in range(1, n_layers):
            c_next = channels * min(2 ** n, 8)
            layers += [nn.Conv2d(c, c_next, 4, 2, 1, bias=norm == "none"), Norm(c_next), nn.LeakyReLU(0.2, True)]
            c = c_next
        c_next = channels * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(c, c_next, 4, 1, 1, bias=norm == "none"), Norm(c_next), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(c_next, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, 1, S/2^n − 2, S/2^n − 2)
        return self.net(x)


def _init_weights(m: nn.Module) -> None:
    """N(0, 0.02) convolutions and N(1, 0.02) BatchNorm scales, as in pix2pix / taming-transformers."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def patch_output_side(S: int, n_layers: int = 3) -> int:
    """Side of the logit grid for an S×S input: n_layers stride-2 4×4 convs then two stride-1 4×4 convs."""
    s = S
    for _ in range(n_layers):
        s = (s + 2 - 4) // 2 + 1
    for _ in range(2):
        s = s + 2 - 4 + 1
    return s


def receptive_field(n_layers: int = 3) -> int:
    """Receptive field in pixels of one output logit (70 for n_layers = 3, pix2pix's "70×70 PatchGAN")."""
    strides = [2] * n_layers + [1, 1]
    r = 1
    for s in reversed(strides):
        r = (r - 1) * s + 4
    return r


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """L_D = ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂))): zero once real > 1 and fake < −1."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """L_G = −mean D(x̂): the generator pushes the fake logits up."""
    return -logits_fake.mean()
