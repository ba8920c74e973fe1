"""VQ-GAN: Esser, Rombach & Ommer, "Taming Transformers for High-Resolution Image Synthesis", CVPR 2021,
arXiv:2012.09841 (§4.5).

The same encoder, codebook and decoder as VQ-VAE (:mod:`museumtok.models.vqvae`), trained with a
perceptual reconstruction term and an adversarial term from a PatchGAN discriminator
(:mod:`museumtok.models.discriminator`), so that the decoder produces sharp textures instead of the
blurry mean that the L2 loss rewards:

    x (B, 3, S, S) ──Encoder──▶ z_e (B, D, S/f, S/f) ──nearest e_k──▶ z_q ──Decoder──▶ x̂ (B, 3, S, S)
                                                                                        │
                               L_rec = |x − x̂|₁ + w_p · L_perc(x, x̂)  ◀────────────────┤
                               L_VQ  = ‖sg[z_e] − e‖² + β‖z_e − sg[e]‖²  (EMA: commitment only)
                               D(x̂) (B, 1, s, s) patch logits ──▶ L_GAN = −mean D(x̂)   (hinge, generator)

    L_G = L_rec + L_VQ + λ · w_d · 1[step ≥ disc_start] · L_GAN

    λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ)           (eq. 7; δ = 1e-6 in the paper)

G_L is the weight of the decoder's last layer. λ scales the adversarial gradient to the size of the
reconstruction gradient at that layer, so neither term swamps the other whatever their raw scales.
The reference code (taming-transformers) uses δ = 1e-4, clamps λ to [0, 10⁴] and detaches it; we do the same
with δ configurable. The discriminator is trained with the hinge loss on (x, x̂.detach()) from ``disc_start``.

Perceptual term. The paper uses LPIPS (Zhang et al. 2018), which needs ImageNet-pretrained backbone
weights. When they are cached (:func:`museumtok.metrics.perceptual.lpips_available`) and
``perceptual="auto"`` or ``"lpips"``, L_perc is LPIPS-AlexNet. Otherwise — as on the machines this
project runs on — L_perc is **1 − MS-SSIM** (Wang et al. 2003), a structural, not a learned perceptual,
loss; ``perceptual_name`` says which one was used and the model card states it. A randomly initialised
"feature" network is deliberately not offered: its features measure nothing perceptual.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import strip_metadata
from ..metrics.image import ms_ssim
from .discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from .layers import AutoencoderOutput
from .vqvae import VQVAE, VQVAEConfig

PERCEPTUAL_CHOICES = ("auto", "lpips", "ms_ssim", "none")


@dataclass
class VQGANConfig(VQVAEConfig):
    rec_loss: str = "l1"                         # pixel term of L_rec: "l1" (taming) or "l2"
    perceptual: str = "auto"                     # "auto": LPIPS if its weights are cached, else 1 − MS-SSIM
    perceptual_weight: float = 1.0               # w_p, weight of the perceptual term
    disc_channels: int = 32                      # width of the discriminator's first layer (pix2pix: 64)
    disc_layers: int = 3                         # strided layers of the PatchGAN (3: 70×70 patches)
    disc_weight: float = 0.8                     # w_d, multiplies λ (taming's disc_weight)
    disc_start: int = 0                          # generator step from which L_GAN and the D updates start
    delta: float = 1e-4                          # δ in λ = ‖∇L_rec‖ / (‖∇L_GAN‖ + δ) (paper 1e-6, code 1e-4)
    max_lambda: float = 1e4                      # clamp of λ (taming's)

    def __post_init__(self):
        super().__post_init__()
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL_CHOICES}, got {self.perceptual!r}")
        if self.rec_loss not in ("l1", "l2"):
            raise ValueError(f"rec_loss must be 'l1' or 'l2', got {self.rec_loss!r}")


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    delta: float = 1e-4, max_lambda: float = 1e4) -> torch.Tensor:
    """λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ), clamped to [0, max_lambda] and detached (eq. 7)."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    lam = g_rec.norm() / (g_gan.norm() + delta)
    return lam.clamp(0.0, max_lambda).detach()


def perceptual_name(choice: str = "auto") -> str:
    """What L_perc will be on this machine: "lpips-alex", "1-ms-ssim" or "none"."""
    if choice == "none":
        return "none"
    if choice == "ms_ssim":
        return "1-ms-ssim"
    from ..metrics.perceptual import lpips_available

    ok, reason = lpips_available("alex")
    if ok:
        return "lpips-alex"
    if choice == "lpips":
        raise RuntimeError(f"perceptual='lpips' but {reason}")
    return "1-ms-ssim"


def perceptual_loss(x_hat: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Mean L_perc over the batch, differentiable in x_hat; inputs in [0, 1]."""
    if name == "none":
        return x_hat.new_zeros(())
    if name == "lpips-alex":
        from ..metrics.perceptual import _model

        return _model("alex")(x_hat * 2 - 1, x * 2 - 1).mean()
    return 1.0 - ms_ssim(x_hat.clamp(0, 1), x).mean()


class VQGAN(VQVAE):
    """VQ-VAE + PatchGAN discriminator; the discriminator is saved with it (small: c = 32 → ≈ 0.7 M params)."""

    def __init__(self, config: VQGANConfig = None):
        if isinstance(config, dict):
            config = VQGANConfig(**strip_metadata(config))
        config = config or VQGANConfig()
        super().__init__(config)
        self.discriminator = PatchDiscriminator(3, config.disc_channels, config.disc_layers)
        self._perceptual = None

    @classmethod
    def from_vqvae(cls, vqvae: VQVAE, **overrides) -> "VQGAN":
        """A VQ-GAN starting from a trained VQ-VAE's encoder, codebook and decoder (fine-tuning)."""
        cfg = VQGANConfig(**{**asdict(vqvae.config), **overrides})
        model = cls(cfg)
        missing, unexpected = model.load_state_dict(vqvae.state_dict(), strict=False)
        if unexpected or any(not k.startswith("discriminator.") for k in missing):
            raise ValueError(f"VQ-VAE weights do not fit: missing {missing}, unexpected {unexpected}")
        return model

    @property
    def perceptual_name(self) -> str:
        if self._perceptual is None:
            self._perceptual = perceptual_name(self.config.perceptual)
        return self._perceptual

    def last_layer(self) -> torch.Tensor:
        """G_L: the weight of the decoder's final 3×3 convolution, where λ is measured."""
        return self.decoder.net[-1].weight

    def reconstruction_loss(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pix = (x_hat - x).abs().mean() if self.config.rec_loss == "l1" else F.mse_loss(x_hat, x)
        perc = perceptual_loss(x_hat, x, self.perceptual_name)
        return {"pixel": pix, "perceptual": perc, "rec": pix + self.config.perceptual_weight * perc}

    def generator_step(self, x: torch.Tensor, step: int) -> AutoencoderOutput:
        """Forward pass and the generator's loss L_G at ``step`` (λ computed only once D is on)."""
        z_e = self.encode(x)                              # (B, D, h, w)
        q = self.quantize(z_e)                            # z_q (B, D, h, w), indices (B, h, w)
        x_hat = self.decode(q.z_q)                        # (B, 3, S, S)
        rec = self.reconstruction_loss(x_hat, x)
        losses = {**rec, **q.losses}
        loss = rec["rec"] + q.loss
        if step >= self.config.disc_start:
            logits_fake = self.discriminator(x_hat * 2 - 1)  # (B, 1, s, s)
            g = hinge_g_loss(logits_fake)
            lam = adaptive_weight(rec["rec"], g, self.last_layer(), self.config.delta, self.config.max_lambda) \
                if torch.is_grad_enabled() else x.new_zeros(())
            loss = loss + self.config.disc_weight * lam * g
            losses.update(g_loss=g, lambda_adaptive=lam)
        return AutoencoderOutput(x_hat=x_hat, z_e=z_e, quant=q, loss=loss, losses=losses)

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hinge loss of D on real x and detached reconstructions x̂ (both (B, 3, S, S) in [0, 1])."""
        logits_real = self.discriminator(x * 2 - 1)
        logits_fake = self.discriminator(x_hat.detach() * 2 - 1)
        return {"d_loss": hinge_d_loss(logits_real, logits_fake),
                "logits_real": logits_real.mean().detach(), "logits_fake": logits_fake.mean().detach()}

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        """The reconstruction part only (L_rec + L_VQ), for evaluation loops shared with VQ-VAE."""
        z_e = self.encode(x)
        q = self.quantize(z_e)
        x_hat = self.decode(q.z_q)
        rec = self.reconstruction_loss(x_hat, x)
        return AutoencoderOutput(x_hat=x_hat, z_e=z_e, quant=q, loss=rec["rec"] + q.loss, losses={**rec, **q.losses})
