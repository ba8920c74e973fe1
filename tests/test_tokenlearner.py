"""TokenLearner (Ryoo et al. 2021), the pooled autoencoder that compares it with the Perceiver Resampler,
and the dynamic token budgets of §10 (museumtok.dynamic)."""
import itertools

import numpy as np
import pytest
import torch

from museumtok.dynamic import allocate_by_content, allocate_optimal, budget_report
from museumtok.models.pooling import PooledAutoencoder, PoolingConfig
from museumtok.models.tokenlearner import TokenLearner


def test_tokenlearner_shapes_and_maps_sum_to_one():
    torch.manual_seed(0)
    tl = TokenLearner(dim=12, num_tokens=5)
    x = torch.randn(3, 6 * 4, 12)
    out = tl(x, grid=(6, 4))
    assert out.latents.shape == (3, 5, 12) and out.maps.shape == (3, 5, 24)
    assert torch.allclose(out.maps.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (out.maps >= 0).all()
    assert out.spatial_maps(6, 4).shape == (3, 5, 6, 4)
    # each token is the map-weighted sum of the transformed features
    v = tl.values(tl.norm(x))
    assert torch.allclose(out.latents, out.maps @ v, atol=1e-5)


def test_tokenlearner_square_grid_by_default_and_errors():
    tl = TokenLearner(dim=8, num_tokens=2, feature_transform=False)
    out = tl(torch.randn(1, 16, 8))
    assert out.maps.shape == (1, 2, 16)
    with pytest.raises(ValueError):
        tl(torch.randn(1, 15, 8))                  # not a square: needs grid=
    with pytest.raises(ValueError):
        tl(torch.randn(1, 16, 8), grid=(3, 5))
    with pytest.raises(ValueError):
        tl(torch.randn(16, 8))


def test_tokenlearner_uses_positions_unlike_the_resampler():
    """The conv sees neighbours, so permuting the positions changes the tokens (the resampler's do not)."""
    torch.manual_seed(1)
    tl = TokenLearner(dim=8, num_tokens=3)
    x = torch.randn(1, 16, 8)
    perm = torch.randperm(16)
    assert not torch.allclose(tl(x).latents, tl(x[:, perm]).latents, atol=1e-4)


@pytest.mark.parametrize("pooler", ["tokenlearner", "resampler"])
def test_pooled_autoencoder_both_poolers(pooler):
    torch.manual_seed(0)
    cfg = PoolingConfig(pooler=pooler, num_tokens=4, image_size=32, channels=(8, 16, 16), dim=16, heads=2,
                        enc_depth=1, dec_depth=1)
    m = PooledAutoencoder(cfg)
    x = torch.rand(2, 3, 32, 32)
    z, maps = m.tokens(x, return_maps=True)
    assert z.shape == (2, 4, 16) and maps.shape == (2, 4, 16)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4), atol=1e-5)
    z_hat, idx = m.quantize(z)
    assert idx.shape == (2, 4) and int(idx.max()) < cfg.codebook_size
    x_hat, loss = m(x)
    assert x_hat.shape == x.shape and loss.ndim == 0
    loss.backward()
    assert all(p.grad is not None for p in m.pooler.parameters())
    assert m.reconstruct(x).min() >= 0 and m.reconstruct(x).max() <= 1
    with pytest.raises(ValueError):
        PoolingConfig(pooler="average")


def test_pooled_autoencoder_round_trip(tmp_path):
    m = PooledAutoencoder(PoolingConfig(pooler="tokenlearner", num_tokens=2, image_size=16, channels=(4, 8, 8), dim=8,
                                        heads=2, dec_depth=1))
    m.save_pretrained(tmp_path)
    m2 = PooledAutoencoder.from_pretrained(str(tmp_path))
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(m.eval().reconstruct(x), m2.eval().reconstruct(x))


def test_allocate_by_content_mean_bounds_and_gamma_zero():
    rng = np.random.default_rng(0)
    scores = rng.random(15) + 0.01
    for mean in (1, 3, 8, 16.4, 64):
        M = allocate_by_content(scores, mean, M_min=1, M_max=64)
        assert M.sum() == round(15 * mean) and M.min() >= 1 and M.max() <= 64 and M.dtype.kind == "i"
    assert np.array_equal(allocate_by_content(scores, 8, gamma=0.0), np.full(15, 8))
    M = allocate_by_content(scores, 8)
    order = np.argsort(scores)
    assert np.all(np.diff(M[order]) >= 0), "more content, never fewer tokens"
    with pytest.raises(ValueError):
        allocate_by_content(scores, 65)


def test_allocate_optimal_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    curves = np.cumsum(rng.normal(0.5, 1.0, size=(4, 6)), axis=1)      # neither concave nor increasing
    for mean in (1, 2, 3.5, 6):
        M = allocate_optimal(curves, mean)
        total = round(4 * mean)
        assert M.sum() == total
        best = max(sum(curves[i, m - 1] for i, m in enumerate(ms))
                   for ms in itertools.product(range(1, 7), repeat=4) if sum(ms) == total)
        got = budget_report(curves, {"opt": M})[0]
        assert got.psnr.sum() == pytest.approx(best)
        assert got.row()["mean M"] == pytest.approx(total / 4)
