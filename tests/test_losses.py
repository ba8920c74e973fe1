"""§7.2's multi-term loss (museumtok.losses): each term against its reference computation on a tiny batch,
the total as the weighted sum, terms of weight 0 never computed, and skipped terms with their reason."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from museumtok.entropy.unigram import UnigramPrior
from museumtok.losses import (LearnedUnigramPrior, MultiTermLoss, MultiTermLossConfig, hard_rate_bits,
                              soft_assignment)
from museumtok.metrics.image import ms_ssim
from museumtok.models.discriminator import PatchDiscriminator

K = 16


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    x_hat = (x + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1).requires_grad_(True)
    idx = torch.randint(0, K, (2, 4, 4), generator=g)
    prior = UnigramPrior.fit(torch.randint(0, K, (500,), generator=torch.Generator().manual_seed(1)), K)
    return x, x_hat, idx, prior


class StandInAligner:
    """A differentiable image embedding (pooled colours through a fixed matrix) and fixed text vectors."""

    def __init__(self, dim: int = 8):
        self.W = torch.randn(3, dim, generator=torch.Generator().manual_seed(2))
        self.calls = 0

    def embed_images(self, x):
        self.calls += 1
        return x.mean((2, 3)) @ self.W                                         # (N, dim)

    def embed_texts(self, texts):
        return torch.stack([torch.randn(self.W.shape[1], generator=torch.Generator().manual_seed(len(t)))
                            for t in texts])


def test_each_term_matches_its_reference(batch):
    x, x_hat, idx, prior = batch
    D = PatchDiscriminator(3, 8, 2, norm="none")
    al = StandInAligner()
    cfg = MultiTermLossConfig(lambda_rec=2.0, lambda_perc=0.5, lambda_gan=0.1, lambda_text=0.3, perceptual="ms_ssim")
    out = MultiTermLoss(cfg, prior=prior, discriminator=D, aligner=al)(x, x_hat, idx, texts=["a red vase", "sea"])
    pixels = 2 * 32 * 32
    assert set(out.terms) == {"rate", "rec", "perc", "gan", "text_align"} and not out.skipped
    # rate: the range coder's ideal code length of the indices, per pixel
    assert out.terms["rate"].item() == pytest.approx(prior.bits(idx) / pixels, rel=1e-6)    # float32 term
    assert out.logged["rate_hard_bpp"] == pytest.approx(prior.bits(idx) / pixels, rel=1e-9)
    assert out.logged["rate_bits_per_token"] == pytest.approx(prior.bits(idx) / idx.numel(), rel=1e-9)
    assert out.terms["rec"].item() == pytest.approx((x_hat - x).abs().mean().item())
    assert out.terms["perc"].item() == pytest.approx(1 - ms_ssim(x_hat.clamp(0, 1), x).mean().item(), rel=1e-6)
    assert out.terms["gan"].item() == pytest.approx(-D(x_hat * 2 - 1).mean().item(), rel=1e-6)
    img, txt = al.embed_images(x_hat), al.embed_texts(["a red vase", "sea"])
    assert out.terms["text_align"].item() == pytest.approx((1 - F.cosine_similarity(img, txt, -1)).mean().item(), rel=1e-6)
    # the total is the weighted sum
    ref = sum(cfg.weight(k) * v for k, v in out.terms.items())
    assert out.total.item() == pytest.approx(ref.item(), rel=1e-6)
    assert all(torch.equal(out.weighted[k], cfg.weight(k) * out.terms[k]) for k in out.terms)
    out.total.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert set(out.as_floats()) >= {"total", "rate", "rec", "perc", "gan", "text_align", "rate_hard_bpp"}


def test_mse_reconstruction_and_the_vq_term(batch):
    x, x_hat, idx, prior = batch
    vq = torch.tensor(0.25)
    out = MultiTermLoss(MultiTermLossConfig(rec="mse", lambda_perc=0, lambda_gan=0, vq_weight=2.0), prior=prior)(
        x, x_hat, idx, vq_loss=vq)
    assert out.terms["rec"].item() == pytest.approx(F.mse_loss(x_hat, x).item())
    assert out.weighted["vq"].item() == pytest.approx(0.5)
    assert out.total.item() == pytest.approx((out.terms["rate"] + out.terms["rec"] + 2 * vq).item(), rel=1e-6)


def test_a_term_of_weight_zero_is_not_computed(batch, monkeypatch):
    x, x_hat, idx, _ = batch
    import museumtok.models.vqgan as vqgan

    def no(*a, **k):
        raise AssertionError("a term of weight 0 was computed")

    monkeypatch.setattr(vqgan, "perceptual_loss", no)

    class CountingPrior(torch.nn.Module):
        calls = 0

        def forward(self):
            CountingPrior.calls += 1
            return torch.zeros(K)

    class CountingD(PatchDiscriminator):
        calls = 0

        def forward(self, x):
            CountingD.calls += 1
            return super().forward(x)

    al = StandInAligner()
    cfg = MultiTermLossConfig(rate_weight=0, lambda_rec=1, lambda_perc=0, lambda_gan=0, lambda_text=0)
    out = MultiTermLoss(cfg, prior=CountingPrior(), discriminator=CountingD(3, 8, 2), aligner=al)(
        x, x_hat, idx, texts=["a", "b"])
    assert set(out.terms) == {"rec"} and CountingPrior.calls == CountingD.calls == al.calls == 0
    assert out.total.item() == pytest.approx(out.terms["rec"].item())
    # the same modules are called once their weights are on
    cfg = MultiTermLossConfig(rate_weight=1, lambda_gan=0.1, lambda_text=0.1, lambda_perc=0)
    MultiTermLoss(cfg, prior=CountingPrior(), discriminator=CountingD(3, 8, 2), aligner=al)(x, x_hat, idx, texts=["a", "b"])
    assert CountingPrior.calls == 1 and CountingD.calls == 1 and al.calls == 1


def test_the_hard_rate_trains_only_a_learned_prior_and_the_soft_rate_reaches_the_encoder():
    g = torch.Generator().manual_seed(3)
    codebook = torch.randn(K, 4, generator=g)
    z_e = torch.randn(1, 4, 3, 3, generator=g, requires_grad=True)
    idx = ((z_e.detach().permute(0, 2, 3, 1).unsqueeze(-2) - codebook) ** 2).sum(-1).argmin(-1)   # (1, 3, 3)
    x = torch.rand(1, 3, 8, 8, generator=g)
    prior = LearnedUnigramPrior(K)
    cfg = MultiTermLossConfig(lambda_rec=0, lambda_perc=0, lambda_gan=0)
    hard = MultiTermLoss(cfg, prior=prior)(x, x, idx, z_e=z_e, codebook=codebook)
    assert hard.terms["rate"].item() == pytest.approx(9 * math.log2(K) / 64)    # uniform prior: log2 K bits a token
    hard.total.backward()
    assert prior.logits.grad is not None and prior.logits.grad.abs().sum() > 0 and z_e.grad is None
    # soft: Σ_k q(k|z_e) (−log2 p(k)), differentiable in z_e; → the hard bits as τ → 0
    fixed = torch.log(torch.arange(1, K + 1, dtype=torch.float64))               # a non-uniform prior (logits)
    soft = MultiTermLoss(MultiTermLossConfig(rate="soft", tau=0.5, lambda_rec=0, lambda_perc=0, lambda_gan=0),
                         prior=fixed)(x, x, idx, z_e=z_e, codebook=codebook)
    q = soft_assignment(z_e, codebook, 0.5)
    lp = torch.log_softmax(fixed, -1) / math.log(2)
    assert soft.terms["rate"].item() == pytest.approx(-(q.double() * lp).sum().item() / 64, rel=1e-6)
    soft.total.backward()
    assert z_e.grad is not None and z_e.grad.abs().sum() > 0
    cold = MultiTermLoss(MultiTermLossConfig(rate="soft", tau=1e-4, lambda_rec=0, lambda_perc=0, lambda_gan=0),
                         prior=fixed)(x, x, idx, z_e=z_e.detach(), codebook=codebook)
    assert cold.terms["rate"].item() == pytest.approx(hard_rate_bits(idx, fixed).item() / 64, rel=1e-4)
    assert cold.logged["rate_hard_bpp"] == pytest.approx(hard_rate_bits(idx, fixed).item() / 64)


def test_terms_that_cannot_run_are_skipped_with_a_reason(batch):
    x, x_hat, idx, prior = batch
    cfg = MultiTermLossConfig(lambda_gan=0.1, lambda_text=0.1, rate="soft")
    out = MultiTermLoss(cfg, prior=prior, discriminator=None, aligner=None)(x, x_hat, idx, texts=["a", "b"])
    assert set(out.skipped) == {"rate", "gan", "text_align"}
    assert "z_e" in out.skipped["rate"] and "discriminator" in out.skipped["gan"]
    assert out.total.item() == pytest.approx((out.terms["rec"] + out.terms["perc"]).item(), rel=1e-6)


def test_auto_perceptual_and_clip_say_what_they_are_on_this_machine(batch):
    from museumtok.metrics.distribution import clip_available
    from museumtok.metrics.perceptual import lpips_available

    x, x_hat, idx, prior = batch
    loss = MultiTermLoss(MultiTermLossConfig(lambda_text=0.1, lambda_gan=0), prior=prior)
    lp_ok, _ = lpips_available("alex")
    clip_ok, reason = clip_available()
    if lp_ok or clip_ok:
        pytest.skip("LPIPS or CLIP weights are present here: the n/a path is not taken")
    out = loss(x, x_hat, idx, texts=["a", "b"])
    assert out.notes["perc"].startswith("1 − MS-SSIM") and "LPIPS n/a" in out.notes["perc"]
    assert out.skipped["text_align"].startswith("CLIP n/a") and reason in out.skipped["text_align"]


def test_clip_aligner_preprocesses_like_clip_and_keeps_the_gradient():
    from types import SimpleNamespace

    from museumtok.losses import CLIPAligner

    seen = {}

    class FakeCLIP:
        def get_image_features(self, pixel_values):
            seen["pixels"] = pixel_values
            return pixel_values.mean((2, 3))                                     # (N, 3)

        def get_text_features(self, input_ids, attention_mask):
            return input_ids[:, :3].float()

    proc = SimpleNamespace(image_processor=SimpleNamespace(crop_size={"height": 24, "width": 24},
                                                           image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]),
                           tokenizer=lambda t, **k: {"input_ids": torch.tensor([[1, 2, 3]] * len(t)),
                                                     "attention_mask": torch.ones(len(t), 3)})
    a = CLIPAligner(FakeCLIP(), proc)
    x = torch.full((1, 3, 40, 64), 0.75, requires_grad=True)
    e = a.embed_images(x)
    assert seen["pixels"].shape == (1, 3, 24, 24)
    assert torch.allclose(seen["pixels"], torch.full_like(seen["pixels"], (0.75 - 0.5) / 0.25), atol=1e-5)
    e.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert a.embed_texts(["x"]).shape == (1, 3)
