"""§5.3: the transformer entropy model (Entroformer-style) and the mask-A context on a frozen hyperprior,
and the HiFiC-style GAN decoder that keeps the bitstream unchanged."""
import math

import pytest
import torch

from museumtok.codecs.learned import ScaleHyperprior
from museumtok.codecs.learned.base import float64_copy, to_8bit
from museumtok.codecs.learned.entroformer import (CausalLatentTransformer, ContextualHyperprior,
                                                  MaskedConvContext, diamond_table, relative_index)


def _perturb_params(module, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def hyperprior():
    torch.manual_seed(0)
    hp = ScaleHyperprior(N=8, M=12).eval()
    hp.update()
    return hp


def test_diamond_relative_positions():
    for r in (1, 2, 4):
        t = diamond_table(r)
        n = 2 * r * r + 2 * r + 1                     # offsets with |Δr| + |Δc| ≤ r
        assert int(t.max()) == n and len(torch.unique(t)) == n + 1
        assert int(t[r, r]) != n and int(t[0, 0]) == n  # the centre is inside, a corner outside
    t = diamond_table(2)
    rows, cols = torch.tensor([3, 3, 0, 9]), torch.tensor([3, 1, 3, 9])
    idx = relative_index(rows[:1], cols[:1], rows, cols, t)[0]
    assert idx[0] == t[2, 2] and idx[1] == t[2, 0] and idx[2] == 13 and idx[3] == 13   # (0,0), (0,−2), far, far


@pytest.mark.parametrize("kind", ["transformer", "mask-a"])
def test_context_is_causal_in_raster_order(kind):
    """Changing the latent at position p changes no prediction at positions ≤ p (p's own included)."""
    torch.manual_seed(1)
    M, P, h, w = 12, 20, 5, 6
    net = CausalLatentTransformer(M, P, d_model=32, heads=4, layers=2) if kind == "transformer" \
        else MaskedConvContext(M, P)
    _perturb_params(net)                              # the output heads start at zero: make them non-trivial
    y, psi = torch.randn(1, M, h, w) * 3, torch.randn(1, P, h, w)
    a, mu = net(y, psi)
    for p in (0, 7, 13, h * w - 1):
        y2 = y.clone()
        y2[0, :, p // w, p % w] += 10.0
        a2, mu2 = net(y2, psi)
        flat = lambda t: t[0].flatten(1)              # (M, L) in raster order  # noqa: E731
        assert torch.allclose(flat(a2)[:, : p + 1], flat(a)[:, : p + 1], atol=1e-6), p
        assert torch.allclose(flat(mu2)[:, : p + 1], flat(mu)[:, : p + 1], atol=1e-6), p
        if p + 1 < h * w:
            assert not torch.allclose(flat(mu2)[:, p + 1 :], flat(mu)[:, p + 1 :]), "later positions do see it"


def test_attention_weights_are_zero_on_later_positions():
    torch.manual_seed(2)
    net = CausalLatentTransformer(12, 20, d_model=32, heads=4, layers=2)
    _, _, maps = net(torch.randn(2, 12, 4, 4), torch.randn(2, 20, 4, 4), return_attention=True)
    L = 16
    for a in maps:                                    # (B, H, L, 1 + L), column 0 = the null slot
        assert torch.allclose(a.sum(-1), torch.ones(2, 4, L))
        later = torch.triu(torch.ones(L, L, dtype=torch.bool))      # j ≥ i
        assert float(a[..., 1:][..., later].abs().max()) == 0.0
        assert torch.allclose(a[:, :, 0, 0], torch.ones(2, 4)), "position 0 only has the null slot"


@pytest.mark.parametrize("kind", ["transformer", "mask-a"])
def test_untrained_context_is_the_hyperprior(hyperprior, kind):
    """Zero-initialised heads: σ = σ_hp and μ = 0, so the likelihoods are the hyperprior's."""
    net = ContextualHyperprior.from_hyperprior(hyperprior, context=kind, d_model=32, heads=4).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = hyperprior(x), net(x)
    assert torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"], rtol=1e-5, atol=1e-9)
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])


@pytest.mark.parametrize("kind", ["transformer", "mask-a"])
def test_sequential_coding_roundtrip_and_matches_the_parallel_pass(hyperprior, kind):
    torch.manual_seed(3)
    net = ContextualHyperprior.from_hyperprior(hyperprior, context=kind, d_model=32, heads=4).eval()
    _perturb_params(net.context, 0.05, seed=4)
    x = torch.rand(3, 128, 192)
    x = torch.nn.functional.interpolate(x[None], scale_factor=0.25, mode="bilinear")
    x = torch.nn.functional.interpolate(x, size=(128, 192), mode="bilinear")[0]     # smooth: small latents
    enc = net.compress(x)
    assert enc.data[0] == net.format_id == (5 if kind == "transformer" else 4)
    a = net.analyse(x)
    x_hat = net.decompress(enc.data)
    assert torch.equal(x_hat, to_8bit(float64_copy(net.g_s)(a["y_hat"])[0, :, :128, :192]))
    est = float(a["bits_y"].sum() + a["bits_z"].sum())
    assert abs(enc.bits - est) <= 0.01 * est + 160, (enc.bits, est)
    # the teacher-forced (training) pass on the decoded ŷ gives the coder's μ and σ
    with torch.no_grad():
        sigma_hp, psi = net.hyper_features(a["z_hat"].float())
        mu, sigma = net.entropy_parameters(a["y_hat"].float(), psi, sigma_hp)
    assert torch.allclose(mu.double(), a["mu"], atol=1e-4) and torch.allclose(sigma.double(), a["sigma"], rtol=1e-4)
    with pytest.raises(Exception):
        ContextualHyperprior.from_hyperprior(hyperprior, context="mask-b")


def test_training_the_context_only_lowers_the_bits(hyperprior):
    from museumtok.train.entropy_context import EntropyContextConfig, bits_per_pixel, fit_context, latent_bank

    torch.manual_seed(5)
    net = ContextualHyperprior.from_hyperprior(hyperprior, context="transformer", d_model=32, heads=4)
    for m in net.hyperprior_modules():
        m.requires_grad_(False)
    frozen = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("context.")}
    y, z = latent_bank(hyperprior, torch.rand(2, 3, 128, 128))       # (2, 12, 8, 8), (2, 8, 2, 2)
    assert y.shape == (2, 12, 8, 8) and z.shape == (2, 8, 2, 2) and torch.equal(z, z.round())
    # latents that are smooth in space, so the decoded neighbours predict each value
    g = torch.Generator().manual_seed(5)
    y = torch.nn.functional.interpolate(8 * torch.randn(16, 12, 3, 3, generator=g), size=8, mode="bilinear",
                                        align_corners=True) + 0.3 * torch.randn(16, 12, 8, 8, generator=g)
    z = torch.zeros(16, 8, 2, 2)
    with torch.no_grad():
        before = float(bits_per_pixel(net.eval(), y, z, 128, training=False))
    cfg = EntropyContextConfig(crop=128, batch=8, lr=3e-3, warmup_steps=1, max_steps=60, max_minutes=5, log_every=30)
    res = fit_context(net, y, z, cfg, val=(y, z))
    with torch.no_grad():
        after = float(bits_per_pixel(net, y, z, 128, training=False))
    assert res["steps"] == 60 and res["curve"][0]["val_bpp_y"] == pytest.approx(before, rel=1e-5)
    assert after < 0.97 * before, (before, after)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in frozen.items()), "only the context model trains"


def test_gan_decoder_keeps_the_bytes_and_trains_only_g_s(hyperprior):
    from museumtok.models.discriminator import patch_output_side
    from museumtok.codecs.learned.hific import ConditionalPatchGAN, HiFiCConfig, d_loss, g_adversarial
    from museumtok.train.gan_decoder import GANDecoderConfig, compare_decoders, fit_gan_decoder, gan_decoder_from

    # HiFiC's non-saturating losses: −log D(x̂) and −log D(x) − log(1 − D(x̂)), D = sigmoid(logits)
    lr, lf = torch.tensor([0.3, -1.2]), torch.tensor([2.0, -0.5])
    assert float(g_adversarial(lf, "non-saturating")) == pytest.approx(float(-torch.log(torch.sigmoid(lf)).mean()))
    assert float(d_loss(lr, lf, "non-saturating")) == pytest.approx(
        float(-torch.log(torch.sigmoid(lr)).mean() - torch.log(1 - torch.sigmoid(lf)).mean()), rel=1e-6)
    assert float(d_loss(lr, lf, "hinge")) == pytest.approx(0.5 * float(torch.relu(1 - lr).mean() + torch.relu(1 + lf).mean()))

    class Crops:
        def __init__(self):
            self.g = torch.Generator().manual_seed(6)

        def batch(self, n):
            return torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=self.g), size=64, mode="bilinear")

    torch.manual_seed(6)
    gan = gan_decoder_from(hyperprior)
    hcfg = HiFiCConfig(M=12, disc_channels=8, disc_layers=2)
    disc = ConditionalPatchGAN(hcfg)
    s = patch_output_side(64, 2)
    assert disc(torch.rand(2, 3, 64, 64), torch.randn(2, 12, 4, 4)).shape == (2, 1, s, s)
    sd_hp = hyperprior.state_dict()
    # the first disc_warmup_steps train D only
    cfg = GANDecoderConfig(batch=2, crop=64, max_steps=2, warmup_steps=1, disc_warmup_steps=2, lr=1e-2, log_every=1)
    fit_gan_decoder(gan, disc, Crops(), cfg, hcfg, "1-ms-ssim")
    assert all(torch.equal(v, gan.state_dict()[k]) for k, v in sd_hp.items()), "D-only steps leave g_s alone"
    cfg = GANDecoderConfig(batch=2, crop=64, max_steps=3, warmup_steps=1, disc_warmup_steps=0, lr=1e-2, log_every=1)
    res = fit_gan_decoder(gan, disc, Crops(), cfg, hcfg, "1-ms-ssim")
    assert res["steps"] == 3 and len(res["curve"]) == 3
    sd_gan = gan.state_dict()
    changed = {k for k in sd_hp if not torch.equal(sd_hp[k], sd_gan[k])}
    assert changed and all(k.startswith("g_s.") for k in changed), changed
    x = torch.rand(3, 64, 128)
    rows = compare_decoders(hyperprior, gan, [("rand", x)])            # raises if the bytes differ
    assert rows[0]["bytes"] == len(hyperprior.compress(x).data)
    assert not math.isclose(rows[0]["psnr_mse"], rows[0]["psnr_gan"], rel_tol=1e-9), "another decoder"
