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


# ---- MaskGIT (§4.6) ---------------------------------------------------------------------------------
from museumtok.models.maskgit import (PAPER_CHOICE_TEMPERATURE, MaskGIT, MaskGITConfig, cosine_schedule,  # noqa: E402
                                      gumbel_like, masked_counts, random_mask, sample_categorical, temperature_at,
                                      uniform_like)

MG = dict(codebook_size=16, grid=(4, 4), dim=16, depth=1, heads=2, dropout=0.0)


def test_cosine_schedule_endpoints_and_monotone():
    assert cosine_schedule(0.0) == 1.0
    assert cosine_schedule(1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_schedule(0.5) == pytest.approx(math.sqrt(0.5))
    r = torch.linspace(0, 1, 11)
    assert torch.all(cosine_schedule(r)[1:] <= cosine_schedule(r)[:-1])
    assert temperature_at(0, 2.0, 0.5, 0.3) == 2.0 and temperature_at(1, 2.0, 0.5, 0.3) == 1.0
    assert temperature_at(10, 2.0, 0.5, 0.3) == 0.3        # τ_t = max(τ_min, τ0·α^t)


def test_training_mask_fraction_follows_gamma():
    g = torch.Generator().manual_seed(0)
    r = torch.tensor([0.0, 1 / 3, 2 / 3, 0.999])
    m = random_mask(4, 64, g, r=r)
    expected = torch.ceil(torch.cos(math.pi / 2 * r) * 64).clamp(1, 64)
    assert torch.equal(m.sum(1), expected.long())
    # r ~ U(0,1): the mean masked fraction is E[cos(πr/2)] = 2/π
    m = random_mask(4000, 64, g)
    assert m.float().mean().item() == pytest.approx(2 / math.pi, abs=0.02)


@pytest.mark.parametrize("n,T", [(16, 8), (16, 5), (64, 12)])
def test_masked_counts_reach_zero_in_exactly_T_steps(n, T):
    c = masked_counts(n, T)
    assert len(c) == T and c[-1] == 0
    assert all(a > b for a, b in zip([n] + c[:-1], c))        # strictly fewer masked every step


def test_decode_fills_every_mask_in_T_passes_and_keeps_given_tokens():
    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(**MG))
    k = torch.randint(0, 16, (3, 4, 4))
    masked = torch.rand(3, 4, 4) < 0.6
    masked[:, 0, 0] = True
    masked[0] = True                                          # one sample fully masked (16 ≥ T)
    history = []
    m.forward_passes = 0
    out = m.decode(k, masked, steps=4, history=history, generator=torch.Generator().manual_seed(1),
                   choice_temperature=2.0)
    assert m.forward_passes == 4 and len(history) == 4
    assert (out < 16).all()                                   # no [MASK] left
    assert torch.equal(out[~masked], k[~masked])              # given tokens never change
    for h in history:                                         # and never change along the way either
        assert torch.equal(h.view(3, 4, 4)[~masked], k[~masked])
    left = [int((h == -1).sum()) for h in history]
    assert left[-1] == 0 and all(a >= b for a, b in zip(left, left[1:]))


def test_inpaint_changes_only_the_box():
    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(**MG))
    k = torch.randint(0, 16, (2, 4, 4))
    out = m.inpaint(k, (1, 1, 2, 3), steps=3)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 1:4] = True
    assert torch.equal(out[:, ~inside], k[:, ~inside])
    assert (out < 16).all()
    with pytest.raises(ValueError, match="outside"):
        m.inpaint(k, (5, 0, 1, 1))


class _FixedLogits(MaskGIT):
    """A MaskGIT whose forward returns the same logits (1, N, K) whatever the input (decoding tests)."""

    def __init__(self, logits):
        super().__init__(MaskGITConfig(**{**MG, "codebook_size": logits.shape[-1]}))
        self.fixed = logits

    def forward(self, tokens):
        self.forward_passes += 1
        return self.fixed.expand(tokens.shape[0], -1, -1)


def test_paper_confidence_is_the_untempered_probability_review_the_tempered():
    """Two holes, T = 2: one is re-masked after step 1. Position 0 samples code 0 with p = 0.5 at any
    temperature; position 1 samples code 0 with p = e/(e+15) ≈ 0.15 untempered but ≈ 1 at τ = 0.1."""
    logits = torch.full((1, 16, 16), -1e4)
    logits[0, 0, :2] = 2.0                                         # position 0: two equally likely codes
    logits[0, 1] = 0.0
    logits[0, 1, 0] = 1.0                                          # position 1: a flat-ish distribution
    m = _FixedLogits(logits)
    k = torch.zeros(1, 16, dtype=torch.long)
    holes = torch.zeros(1, 16, dtype=torch.bool)
    holes[0, :2] = True
    for decoding, kw, remasked in (("paper", {}, 1), ("review", {"tau0": 0.1}, 0)):
        history = []
        m.decode(k, holes, steps=2, decoding=decoding, greedy=True, history=history, **kw)
        assert (history[0][0] == -1).nonzero().flatten().tolist() == [remasked], decoding
        assert (history[1] >= 0).all()


def test_paper_samples_at_temperature_one():
    """One hole, one step: the paper's draw follows softmax(logits) itself (Gumbel-max), the review's
    softmax(logits / τ0) — counted over many grids."""
    logits = torch.full((1, 16, 4), -1e4)
    logits[0, 0] = torch.tensor([1.0, 0.0, -1.0, 0.5])
    m = _FixedLogits(logits)
    n = 20000
    hole = torch.zeros(n, 16, dtype=torch.bool)
    hole[:, 0] = True
    k = torch.zeros(n, 16, dtype=torch.long)
    for decoding, kw, tau in (("paper", {}, 1.0), ("review", {"tau0": 0.5}, 0.5)):
        out = m.decode(k, hole, steps=1, decoding=decoding, generator=torch.Generator().manual_seed(0), **kw)
        freq = torch.bincount(out[:, 0], minlength=4).double() / n
        assert (freq - torch.softmax(logits[0, 0].double() / tau, 0)).abs().max() < 0.015, decoding


def test_paper_is_the_default_and_the_review_schedule_is_an_option():
    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(**MG))
    start = torch.full((2, 4, 4), 16)
    g = lambda: torch.Generator().manual_seed(3)                   # noqa: E731
    assert torch.equal(m.decode(start, generator=g()), m.decode(start, decoding="paper", generator=g()))
    assert torch.equal(m.decode(start, decoding="paper", generator=g()),
                       m.decode(start, decoding="paper", choice_temperature=PAPER_CHOICE_TEMPERATURE, generator=g()))
    assert PAPER_CHOICE_TEMPERATURE == 4.5                         # the reference code's sample_choice_temperature
    assert torch.equal(m.decode(start, decoding="review", generator=g()),
                       m.decode(start, decoding="review", tau0=1.0, alpha=0.9, tau_min=0.1, choice_temperature=0,
                                generator=g()))
    with pytest.raises(ValueError, match="decoding='review'"):
        m.decode(start, tau0=2.0)                                  # τ_t belongs to the review's decoding
    with pytest.raises(ValueError, match="decoding must be"):
        m.decode(start, decoding="top-p")
    with pytest.raises(ValueError, match="choice_temperature"):
        m.decode(start, choice_temperature=-1.0)


def test_choice_noise_is_annealed_to_zero_and_made_where_the_logits_are(monkeypatch):
    import museumtok.models.maskgit as mgm

    calls = []
    real = mgm.gumbel_like

    def spy(like, generator=None):
        g = real(like, generator)
        calls.append((like.device, like.dtype, g.device, g.dtype))
        return g

    monkeypatch.setattr(mgm, "gumbel_like", spy)
    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(**MG))
    m.decode(torch.full((2, 4, 4), 16), steps=4, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 8 and all(ld == gd and lt == gt for ld, lt, gd, gt in calls)   # sampling + choice, ×T
    calls.clear()
    m.decode(torch.full((2, 4, 4), 16), steps=4, choice_temperature=0.0)
    assert len(calls) == 4                                         # the Gumbel-max sampling only
    calls.clear()
    m.decode(torch.full((2, 4, 4), 16), steps=4, greedy=True)
    assert calls == []                                             # deterministic: no noise drawn at all
    # the scale τ_c·(1 − (t+1)/T), as in the reference code: zero at the last step
    assert [mgm.choice_noise_scale(t, 4) for t in range(4)] == [4.5 * 0.75, 4.5 * 0.5, 4.5 * 0.25, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_noise_follows_the_tensor_device_and_dtype(dtype):
    like = torch.empty(2, 5, device="meta", dtype=dtype)           # a device other than the CPU
    for gen in (None, torch.Generator().manual_seed(0)):           # a CPU generator for a non-CPU tensor
        for noise in (uniform_like(like, gen), gumbel_like(like, gen)):
            assert noise.device == like.device and noise.dtype == dtype and noise.shape == like.shape
    g = gumbel_like(torch.empty(20000), torch.Generator().manual_seed(0))
    assert torch.isfinite(g).all() and abs(g.mean().item() - 0.5772) < 0.03   # Euler–Mascheroni: E[Gumbel]
    u1 = uniform_like(torch.empty(7, device="meta"), torch.Generator().manual_seed(5))
    assert u1.device.type == "meta"
    s = sample_categorical(torch.tensor([[0.0, 1.0, 0.0]] * 3), torch.Generator().manual_seed(0))
    assert s.tolist() == [1, 1, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_with_choice_noise_on_cuda():
    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(**MG)).cuda()
    start = torch.full((2, 4, 4), 16, device="cuda")
    for gen in (None, torch.Generator().manual_seed(0), torch.Generator("cuda").manual_seed(0)):
        for decoding in ("paper", "review"):
            out = m.decode(start, steps=4, decoding=decoding, choice_temperature=4.5, generator=gen)
            assert out.device.type == "cuda" and (out < 16).all()
    a = m.decode(start, generator=torch.Generator().manual_seed(1)).cpu()
    b = m.cpu().decode(start.cpu(), generator=torch.Generator().manual_seed(1))
    assert a.shape == b.shape


def test_ar_vs_maskgit_forward_passes_and_causality():
    torch.manual_seed(0)
    ar = MaskGIT(MaskGITConfig(**MG, causal=True))
    mg = MaskGIT(MaskGITConfig(**MG))
    assert sum(p.numel() for p in ar.parameters()) == sum(p.numel() for p in mg.parameters())  # same size
    out = ar.generate_autoregressive(2)
    assert out.shape == (2, 4, 4) and ar.forward_passes == 16            # N = h·w passes
    mg.decode(torch.full((2, 4, 4), 16), steps=4)
    assert mg.forward_passes == 4                                         # T passes
    # causal: logits at position i do not depend on inputs after i
    a = torch.randint(0, 17, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 16
    with torch.no_grad():
        assert torch.allclose(ar.eval()(a)[0, :10], ar(b)[0, :10], atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        ar.decode(torch.full((1, 4, 4), 16))


def test_maskgit_loss_and_round_trip(tmp_path):
    m = MaskGIT(MaskGITConfig(**MG))
    k = torch.randint(0, 16, (4, 4, 4))
    out = m.loss(k, torch.Generator().manual_seed(0))
    assert out["loss"].item() > 0 and 0 < out["mask_fraction"].item() <= 1
    m.save_pretrained(tmp_path)
    m2 = MaskGIT.from_pretrained(str(tmp_path)).eval()
    x = torch.randint(0, 17, (1, 16))
    assert torch.allclose(m.eval()(x), m2(x))
    with pytest.raises(ValueError, match="expected 16 tokens"):
        m(torch.zeros(1, 9, dtype=torch.long))


# ---- video tokens (§4.7) ----------------------------------------------------------------------------
from museumtok.models.video import (VideoVQ, VideoVQConfig, fit_clips, latent_frames, moving_square_clip,  # noqa: E402
                                    pan_zoom_clip, tokens_per_second, video_token_grid)


def test_video_token_rate_arithmetic_matches_errata():
    from museumtok.literature import load_errata

    e = {e.id: e for e in load_errata()}["s4-7-rate"]
    ours = tokens_per_second(30, grid=(16, 16), t=4)             # the review's own parameters
    assert ours == 30 / 4 * 16 * 16
    chk = e.check()
    assert chk.value == pytest.approx(ours) and chk.agrees            # data/errata.csv: 1920 …
    assert chk.refutes_review and chk.review == 512 != ours          # … not the review's 512
    assert tokens_per_second(30, 128, 128, f=8, t=4) == ours      # 128 px frames at f8 give the same 16×16 grid
    assert tokens_per_second(24, 256, 256, f=8, t=4) == 24 / 4 * 32 * 32
    assert latent_frames(17, 4, causal_first_frame=True) == 5     # MAGVIT-v2's 17 → 5
    assert video_token_grid(16, 64, 96) == (4, 8, 12)
    with pytest.raises(ValueError, match="multiple of the temporal factor"):
        latent_frames(10, 4)


def test_video_tokenizer_shapes_and_measured_count():
    torch.manual_seed(0)
    m = VideoVQ(VideoVQConfig(channels=(8, 8, 8, 8), codebook_size=32, dim=4))
    clips = torch.stack([moving_square_clip(8, 32), moving_square_clip(8, 32, velocity=(1, 3), colour=(0.1, 0.8, 0.2))])
    k = m.encode_indices(clips)
    assert k.shape == (2, *video_token_grid(8, 32, 32, f=8, t=4)) == (2, 2, 4, 4)
    # measured tokens per second of the 8-frame clip at 30 fps = the formula
    assert k[0].numel() / (8 / 30) == pytest.approx(tokens_per_second(30, 32, 32, f=8, t=4))
    assert m.decode_indices(k).shape == clips.shape
    losses = fit_clips(m, clips, steps=12, lr=3e-3)
    assert losses[-1] < losses[0]
    clip = pan_zoom_clip(torch.rand(3, 40, 60), T=4, S=16)
    assert clip.shape == (3, 4, 16, 16) and 0 <= clip.min() and clip.max() <= 1
    with pytest.raises(ValueError, match="clip"):
        m(torch.rand(1, 3, 32, 32))
