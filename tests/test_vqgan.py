"""VQ-GAN (§4.5), MaskGIT (§4.6) and video tokens (§4.7): small, fast checks on tiny models."""
import math

import pytest
import torch
import torch.nn.functional as F

from museumtok.models.discriminator import (PatchDiscriminator, hinge_d_loss, hinge_g_loss, patch_output_side,
                                            receptive_field)
from museumtok.models.vqgan import VQGAN, VQGANConfig, adaptive_weight

torch.set_num_threads(1)

TINY = dict(channels=(8, 8, 8, 8), codebook_size=16, dim=4, disc_channels=8, kmeans_init=False)


@pytest.mark.parametrize("S,n", [(256, 3), (64, 3), (64, 2)])
def test_discriminator_patch_grid(S, n):
    d = PatchDiscriminator(3, 8, n)
    out = d(torch.rand(2, 3, S, S))
    side = patch_output_side(S, n)
    assert out.shape == (2, 1, side, side)
    if S == 256 and n == 3:
        assert side == 30                      # the pix2pix 30×30 grid
    assert receptive_field(3) == 70            # "70×70 PatchGAN"


def test_hinge_losses():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    expected = 0.5 * (sum(max(0.0, 1 - r) for r in real.tolist()) / 3 + sum(max(0.0, 1 + f) for f in fake.tolist()) / 3)
    assert hinge_d_loss(real, fake).item() == pytest.approx(expected)
    assert hinge_d_loss(torch.full((4,), 1.5), torch.full((4,), -1.5)).item() == 0.0  # margins met: no loss
    assert hinge_g_loss(fake).item() == pytest.approx(-fake.mean().item())


def test_adaptive_weight_formula_by_hand():
    # last layer w (2,), L_rec = ‖w‖² ⇒ ∇ = 2w ; L_GAN = 3·Σw ⇒ ∇ = (3, 3)
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    rec, gan = (w ** 2).sum(), 3 * w.sum()
    lam = adaptive_weight(rec, gan, w, delta=1e-6)
    assert lam.item() == pytest.approx(10.0 / (math.sqrt(18) + 1e-6), rel=1e-6)   # ‖(6, 8)‖ = 10
    assert not lam.requires_grad
    assert adaptive_weight(rec * 1e9, gan, w, delta=1e-6, max_lambda=5.0).item() == 5.0  # clamp


def test_vqgan_generator_step_uses_lambda_on_decoder_last_layer():
    torch.manual_seed(0)
    m = VQGAN(VQGANConfig(**TINY, perceptual="ms_ssim", disc_start=1))
    x = torch.rand(2, 3, 32, 32)
    off = m.generator_step(x, step=0)                   # before disc_start: no adversarial term
    assert "g_loss" not in off.losses
    on = m.generator_step(x, step=1)
    rec, g = on.losses["rec"], on.losses["g_loss"]
    G_L = m.last_layer()
    assert G_L is m.decoder.net[-1].weight
    g_rec = torch.autograd.grad(rec, G_L, retain_graph=True)[0]
    g_gan = torch.autograd.grad(g, G_L, retain_graph=True)[0]
    lam = (g_rec.norm() / (g_gan.norm() + m.config.delta)).item()
    assert on.losses["lambda_adaptive"].item() == pytest.approx(lam, rel=1e-5)
    total = rec + on.losses["commitment"] * m.config.beta + m.config.disc_weight * lam * g
    assert on.loss.item() == pytest.approx(total.item(), rel=1e-5)
    d = m.discriminator_loss(x, on.x_hat)
    assert d["d_loss"].item() >= 0


def test_vqgan_from_vqvae_keeps_weights_and_round_trips(tmp_path):
    from museumtok.models.vqvae import VQVAE, VQVAEConfig

    v = VQVAE(VQVAEConfig(**{k: v for k, v in TINY.items() if k != "disc_channels"}))
    g = VQGAN.from_vqvae(v, disc_channels=8)
    assert torch.equal(g.decoder.net[-1].weight, v.decoder.net[-1].weight)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(g.encode_indices(x), v.encode_indices(x))
    g.save_pretrained(tmp_path)
    g2 = VQGAN.from_pretrained(str(tmp_path))
    assert isinstance(g2.config, VQGANConfig) and g2.config.disc_channels == 8
    assert torch.equal(g2.encode_indices(x), g.encode_indices(x))
    with pytest.raises(ValueError, match="perceptual"):
        VQGANConfig(perceptual="vgg")


def test_commitment_term_name_matches_quantizer():
    m = VQGAN(VQGANConfig(**TINY, perceptual="none"))
    out = m(torch.rand(1, 3, 16, 16))
    assert out.loss.item() == pytest.approx((out.losses["rec"] + out.quant.loss).item())
