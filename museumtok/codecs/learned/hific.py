"""GAN-trained codec decoder — Mentzer, Toderici, Tschannen & Agustsson, "High-Fidelity Generative Image Compression" (HiFiC), NeurIPS 2020 (arXiv:2006.09965), reduced to its decoder (§5.3).

HiFiC trains a hyperprior codec — encoder E, generator (decoder) G, entropy model P — together with a
*conditional* discriminator D that sees the image and the quantized latent:

    L_EGP = λ'·r(ŷ) + k_M·MSE + k_P·d_P + β·(−log D(x̂, ŷ))        x̂ = G(ŷ), d_P = LPIPS
    L_D   = −log(1 − D(x̂, ŷ)) − log D(x, ŷ)

Here E and P stay the bundled hyperprior's, frozen: r(ŷ) is gone from the loss and **the bitstream
does not change** (the same bytes for every image); only the synthesis transform g_s (HiFiC's G) is
fine-tuned, so the experiment isolates what the adversarial decoder does at a fixed rate. With no
LPIPS weights on the machine, d_P is 1 − MS-SSIM (as for the package's VQ-GAN,
:func:`museumtok.models.vqgan.perceptual_loss`): a structural loss, not a learned perceptual one.

    ŷ (B, M, h, w) ──g_s──▶ x̂ (B, 3, 16h, 16w)
    ŷ ──1×1 conv──▶ (B, 12, h, w) ──nearest ×16──▶ (B, 12, 16h, 16w) ─┐
    x or x̂ (in [−1, 1]) ───────────────────────────────────────────────┴─cat─▶ PatchGAN ──▶ logits (B, 1, s, s)

The discriminator is the package's PatchGAN (:class:`museumtok.models.discriminator.PatchDiscriminator`,
pix2pix's 70×70 patches) with the ŷ channels concatenated to its input, which is HiFiC's way of
conditioning. Two details matter in a CPU-minutes run (measured: otherwise D stays at chance, logits
real = fake, for 80+ steps): the 1×1 projection of ŷ starts at zero, because ŷ reaches ±30 while the
image is in [−1, 1] and a random projection swamps it; and real and fake images go through D **in one
batch**, because batch norm applied to an all-real and an all-fake batch separately pins both batches'
mean logits to the same value. HiFiC's D uses spectral normalisation instead (``disc_norm="spectral"``,
Miyato et al., ICLR 2018), which learned too slowly here.
Losses: HiFiC's non-saturating −log D, or the hinge loss of VQ-GAN.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...models.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss

GAN_LOSSES = ("non-saturating", "hinge")


@dataclass
class HiFiCConfig:
    M: int = 96                        # channels of ŷ (the discriminator's condition)
    k_mse: float = 0.075 * 2 ** -5     # k_M, weight of the MSE on 0…255 pixels (HiFiC's value)
    k_perceptual: float = 1.0          # k_P, weight of d_P (here 1 − MS-SSIM; HiFiC: LPIPS)
    beta: float = 0.15                 # β, weight of the generator's adversarial term (HiFiC's value)
    gan_loss: str = "non-saturating"   # "non-saturating" (HiFiC: −log D) or "hinge" (VQ-GAN)
    conditional: bool = True           # give D the latent ŷ (HiFiC) or only the image
    cond_channels: int = 12            # ŷ is projected to this many channels before upsampling (HiFiC: 12)
    disc_channels: int = 32            # PatchGAN width
    disc_layers: int = 3               # PatchGAN depth (3: 70×70 px patches)
    disc_norm: str = "batch"           # PatchGAN normalisation: "batch" (pix2pix), "spectral" (HiFiC) or "none"

    def __post_init__(self):
        if self.gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {self.gan_loss!r}")
        if self.disc_norm not in ("spectral", "batch", "none"):
            raise ValueError(f"disc_norm must be 'spectral', 'batch' or 'none', got {self.disc_norm!r}")


class ConditionalPatchGAN(nn.Module):
    """D(x, ŷ): the PatchGAN on [x, upsample(proj(ŷ))], or on x alone when not conditional."""

    def __init__(self, cfg: HiFiCConfig):
        super().__init__()
        self.conditional = cfg.conditional
        extra = cfg.cond_channels if cfg.conditional else 0
        self.proj = nn.Conv2d(cfg.M, cfg.cond_channels, 1) if cfg.conditional else None
        if self.proj is not None:   # ŷ reaches ±30 while x ∈ [−1, 1]: a zero start keeps the condition from
            nn.init.zeros_(self.proj.weight)   # swamping the image; D learns how much of ŷ to use
        self.net = PatchDiscriminator(3 + extra, cfg.disc_channels, cfg.disc_layers,
                                      norm="batch" if cfg.disc_norm == "batch" else "none")
        if cfg.disc_norm == "spectral":   # Miyato et al. 2018: each conv's largest singular value kept at 1
            for m in list(self.net.modules()):
                if isinstance(m, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y_hat: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1], ŷ (B, M, H/16, W/16) -> patch logits (B, 1, s, s)."""
        inp = x * 2 - 1
        if self.conditional:
            c = F.interpolate(self.proj(y_hat), size=x.shape[-2:], mode="nearest")   # (B, 12, H, W)
            inp = torch.cat([inp, c], 1)
        return self.net(inp)


def g_adversarial(logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator term: −log D(x̂) = softplus(−logits) (non-saturating) or −mean logits (hinge)."""
    return F.softplus(-logits_fake).mean() if kind == "non-saturating" else hinge_g_loss(logits_fake)


def d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """−log D(x) − log(1 − D(x̂)) with D = sigmoid(logits) (non-saturating), or the hinge loss."""
    if kind == "non-saturating":
        return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
    return hinge_d_loss(logits_real, logits_fake)


def real_fake_logits(disc: ConditionalPatchGAN, x: torch.Tensor, x_hat: torch.Tensor,
                     y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D on [x; x̂] as one batch (shared batch-norm statistics), both conditioned on ŷ: (real, fake) logits."""
    logits = disc(torch.cat([x, x_hat]), torch.cat([y_hat, y_hat]))     # (2B, 1, s, s)
    return logits[: len(x)], logits[len(x) :]


def generator_loss(x: torch.Tensor, x_hat: torch.Tensor, y_hat: torch.Tensor, disc: ConditionalPatchGAN,
                   cfg: HiFiCConfig, perceptual: str = "1-ms-ssim") -> dict[str, torch.Tensor]:
    """L_G = k_M·MSE(0…255) + k_P·d_P + β·L_adv, and its terms (x, x̂ (B, 3, H, W) in [0, 1])."""
    from ...models.vqgan import perceptual_loss

    mse = F.mse_loss(x_hat, x)
    d_p = perceptual_loss(x_hat, x, perceptual)
    adv = g_adversarial(real_fake_logits(disc, x, x_hat, y_hat)[1], cfg.gan_loss)
    loss = cfg.k_mse * 255**2 * mse + cfg.k_perceptual * d_p + cfg.beta * adv
    return {"loss": loss, "mse": mse.detach(), "perceptual": d_p.detach(), "adversarial": adv.detach()}


def discriminator_loss(x: torch.Tensor, x_hat: torch.Tensor, y_hat: torch.Tensor, disc: ConditionalPatchGAN,
                       cfg: HiFiCConfig) -> dict[str, torch.Tensor]:
    """L_D on real x and detached x̂, both conditioned on the same ŷ."""
    real, fake = real_fake_logits(disc, x, x_hat.detach(), y_hat)
    return {"d_loss": d_loss(real, fake, cfg.gan_loss), "logits_real": real.mean().detach(),
            "logits_fake": fake.mean().detach()}
