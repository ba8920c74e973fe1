"""Perceiver Resampler, the any-M tokenizer (nested dropout) and the multi-scale tokenizer."""
import pytest
import torch

from museumtok.models.anym import AnyMAutoencoder, AnyMConfig, keep_mask, sample_keep
from museumtok.models.resampler import PerceiverResampler, ResamplerConfig
from museumtok.tokenizers.anym import AnyMTokenizer
from museumtok.tokenizers.base import UnsupportedM

TINY = dict(image_size=16, f=4, channels=(16, 32, 32), dim=32, max_tokens=8, enc_depth=1, dec_depth=1,
            heads=4, ff_mult=2, levels=(3, 3))


@pytest.fixture
def resampler():
    torch.manual_seed(0)
    return PerceiverResampler.from_config(ResamplerConfig(dim=32, num_latents=6, depth=2, heads=4, input_dim=20)).eval()


def test_resampler_shapes_and_attention(resampler):
    x = torch.randn(3, 50, 20)
    out = resampler(x, return_attention=True)
    assert out.latents.shape == (3, 6, 32)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 6, 50 + 6)  # latents among the keys
    a = out.patch_attention()
    assert a.shape == (3, 6, 50) and torch.allclose(a.sum(-1), torch.ones(3, 6), atol=1e-5)
    # the fused attention path and the explicit one (with maps) agree
    assert torch.allclose(resampler(x).latents, out.latents, atol=1e-5)


def test_resampler_any_number_of_inputs(resampler):
    for n in (1, 7, 200):
        assert resampler(torch.randn(2, n, 20)).latents.shape == (2, 6, 32)


def test_resampler_is_invariant_to_the_order_of_its_patches(resampler):
    x = torch.randn(2, 40, 20)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    y, y_perm = resampler(x).latents, resampler(x[:, perm]).latents
    assert torch.allclose(y, y_perm, atol=1e-5)
    # ... while the latents themselves are ordered: swapping two learned queries swaps the outputs
    assert not torch.allclose(y[:, 0], y[:, 1], atol=1e-3)


def test_resampler_mask_equals_dropping_the_inputs(resampler):
    x = torch.randn(2, 30, 20)
    mask = torch.arange(30)[None].repeat(2, 1) < 12
    assert torch.allclose(resampler(x, mask=mask).latents, resampler(x[:, :12]).latents, atol=1e-5)
    assert torch.allclose(resampler(x, mask=mask, return_attention=True).latents, resampler(x[:, :12]).latents, atol=1e-5)


def test_soft_tokens_have_the_llm_width(resampler):
    s = resampler.soft_tokens(torch.randn(2, 10, 20), llm_width=64)
    assert s.shape == (2, 6, 64)
    s.sum().backward()  # the projection is trainable
    assert resampler.to_llm["64"].weight.grad is not None


def test_resampler_rejects_bad_input(resampler):
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        resampler(torch.randn(50, 20))


# ---- any-M ---------------------------------------------------------------------------------------
@pytest.fixture
def tiny_anym():
    torch.manual_seed(0)
    return AnyMAutoencoder(AnyMConfig(**TINY)).eval()


def test_anym_shapes_for_every_M(tiny_anym):
    tok = AnyMTokenizer(tiny_anym)
    assert tok.supported_M == tuple(range(1, 9)) and tok.K == 9
    x = torch.rand(2, 3, 16, 16)
    full = tok.encode_tensor(x, 8)
    for M in tok.supported_M:
        idx = tok.encode_tensor(x, M)
        assert idx.shape == (2, M) and idx.dtype == torch.long and int(idx.max()) < tok.K
        assert torch.equal(idx, full[:, :M]), "the M-token code is a prefix of the M_max-token code"
        x_hat = tok.decode_indices(idx, M)
        assert x_hat.shape == (2, 3, 16, 16) and 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    maps = tok.attention_maps(x, 5)
    assert maps.shape == (2, 5, 4, 4) and torch.allclose(maps.sum((-1, -2)), torch.ones(2, 5), atol=1e-5)
    with pytest.raises(UnsupportedM, match="choose one of 1…8|choose one of 1, 2"):
        tok.check_M(9)


def test_anym_masked_decode_equals_decoding_the_prefix(tiny_anym):
    x = torch.rand(3, 3, 16, 16)
    z_hat, _ = tiny_anym.quantize(tiny_anym.encode_latents(x).latents)
    m = torch.tensor([1, 4, 8])
    masked = tiny_anym.decode_tokens(z_hat, keep_mask(m, 8))
    for b, mb in enumerate(m.tolist()):
        assert torch.allclose(masked[b], tiny_anym.decode_tokens(z_hat[b : b + 1, :mb])[0], atol=1e-5)


def test_sample_keep_range():
    m = sample_keep(2000, 64, torch.Generator().manual_seed(0))
    assert int(m.min()) == 1 and int(m.max()) == 64
    assert (m <= 8).float().mean() > 0.2, "small m drawn often (log-uniform share)"


def test_nested_dropout_orders_the_code_on_a_toy_set():
    """Rippel et al. 2014: a linear autoencoder trained with nested dropout (the first m of M code
    units kept, m drawn by :func:`sample_keep`, masked by :func:`keep_mask`) orders its code like PCA,
    so the reconstruction error falls with every unit added; without it, the first units mean little."""
    g = torch.Generator().manual_seed(0)
    D, M, n = 12, 6, 2000
    scales = torch.tensor([3.0, 2.5, 2.0, 1.6, 1.3, 1.0, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1])
    basis = torch.linalg.qr(torch.randn(D, D, generator=g))[0]
    x = (torch.randn(n, D, generator=g) * scales) @ basis.T                 # anisotropic toy data

    def fit(nested: bool):
        torch.manual_seed(0)
        enc, dec = torch.nn.Linear(D, M), torch.nn.Linear(M, D)
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=0.02)
        for step in range(600):
            m = sample_keep(n, M, g) if nested else torch.full((n,), M)
            x_hat = dec(enc(x) * keep_mask(m, M))
            loss = ((x_hat - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return [float(((dec(enc(x) * keep_mask(torch.full((n,), k), M)) - x) ** 2).mean()) for k in range(1, M + 1)]

    err = fit(nested=True)
    for k in range(M - 1):
        assert err[k + 1] < err[k], f"MSE by m: {err}"
    pca = [float((scales[k:] ** 2).sum() / D) for k in range(1, M + 1)]    # the optimum for each m
    assert all(e < 1.15 * p for e, p in zip(err, pca)), (err, pca)
    plain = fit(nested=False)
    assert plain[-1] < 1.15 * pca[-1] and plain[0] > 1.2 * err[0], (plain, err)


def test_anym_learns_with_nested_dropout():
    """A few steps on smooth toy images lower the nested-dropout loss (the whole model trains)."""
    torch.manual_seed(0)
    model = AnyMAutoencoder(AnyMConfig(**TINY))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    x = (torch.rand(16, 3, 1, 1) * 0.6 + 0.2 + 0.1 * torch.cos(torch.pi * (xx + yy))).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        o = model(x, sample_keep(len(x), 8, g))
        opt.zero_grad()
        o.loss.backward()
        opt.step()
        losses.append(float(o.loss.detach()))
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10]), losses


# ---- multi-scale ---------------------------------------------------------------------------------
def test_multiscale_levels_shapes_and_boxes():
    from museumtok.models.multiscale import MultiScaleAutoencoder, MultiScaleConfig
    from museumtok.tokenizers.multiscale import MultiScaleTokenizer

    torch.manual_seed(0)
    model = MultiScaleAutoencoder(MultiScaleConfig(image_size=32, channels=(8, 8, 8, 8), dim=8, levels=(5, 5)))
    tok = MultiScaleTokenizer(model)
    assert tok.supported_M == (4, 20) and tok.K == 25
    x = torch.rand(2, 3, 32, 32)
    coarse, both = tok.encode_tensor(x, 4), tok.encode_tensor(x, 20)
    assert coarse.shape == (2, 4) and both.shape == (2, 20)
    assert torch.equal(both[:, :4], coarse), "the coarse tokens are a prefix of the full sequence"
    for idx in (coarse, both):
        assert tok.decode_indices(idx).shape == (2, 3, 32, 32)
    assert tok.token_levels(20) == ["coarse"] * 4 + ["fine"] * 16
    boxes = tok.token_boxes((20,), 32)
    assert boxes.shape == (20, 4)
    assert torch.equal(boxes[0], torch.tensor([0.0, 0.0, 16.0, 16.0])) and torch.equal(boxes[4], torch.tensor([0.0, 0.0, 8.0, 8.0]))
    # dropping the fine level in training decodes exactly what the 64-token (here 4) code decodes
    model.eval()
    out = model(x, use_fine=torch.tensor([False, True]))
    assert torch.allclose(out.x_hat[0].clamp(0, 1), tok.decode_indices(coarse)[0], atol=1e-5)
    assert torch.allclose(out.x_hat[1].clamp(0, 1), tok.decode_indices(both)[1], atol=1e-5)
    with pytest.raises(ValueError, match="4 or 20 tokens"):
        model.decode_indices(both[:, :7])


# ---- app -----------------------------------------------------------------------------------------
def test_app_token_attention(artwork_path):
    from museumtok import registry
    from museumtok.app.attention import token_attention

    if "anym-k1000" not in registry.names("tokenizer"):
        pytest.skip("anym-k1000 not bundled")
    r = token_attention(str(artwork_path), "anym-k1000", 16, 3)
    assert r.overlay is not None and r.overlay.size == (256, 256) and "token 3 of 16" in r.message
    assert r.mosaic is not None
    assert "between 0 and 15" in token_attention(str(artwork_path), "anym-k1000", 16, 16).message
    assert "choose one of" in token_attention(str(artwork_path), "anym-k1000", 99, 0).message
    assert "grid tokens" in token_attention(str(artwork_path), "lloyd-patch-k256", 64, 0).message
    assert "first" in token_attention(None, "anym-k1000", 16, 0).message


@pytest.mark.parametrize("name,Ms", [("anym-k1000", (1, 8, 64)), ("multiscale-k1000", (64, 320))])
def test_bundled_checkpoints_improve_with_M(name, Ms, data_available):
    from museumtok import registry
    from museumtok.eval.metrics import evaluate_tokenizer

    if name not in registry.names("tokenizer"):
        pytest.skip(f"{name} not bundled")
    tok = registry.load(name)
    ps = [evaluate_tokenizer(tok, "kodak", M, limit=4)["psnr"] for M in Ms]
    assert all(b > a for a, b in zip(ps, ps[1:])), dict(zip(Ms, ps))
