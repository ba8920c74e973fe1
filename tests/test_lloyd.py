"""Lloyd-Max / k-means (§4.1, Appendix B Alg. 1) on hand-made and real data."""
import pytest
import torch

from museumtok.quantize.lloyd import (
    distortion, ema_step, fit_codebook, kmeans_pp_init, lloyd_step, minibatch_step, nearest,
)


def test_nearest_matches_cdist(rng):
    z = torch.randn(1000, 12, generator=rng)
    c = torch.randn(37, 12, generator=rng)
    idx, d2 = nearest(z, c, chunk=128)
    ref = torch.cdist(z, c).pow(2)
    assert torch.equal(idx, ref.argmin(1))
    assert torch.allclose(d2, ref.min(1).values, atol=1e-4)


def test_lloyd_step_is_the_cell_mean():
    z = torch.tensor([[0.0], [1.0], [10.0], [12.0]])
    c = torch.tensor([[0.0], [11.0]])
    new, idx, d = lloyd_step(z, c)
    assert idx.tolist() == [0, 0, 1, 1]
    assert new.flatten().tolist() == [0.5, 11.0]
    assert d == pytest.approx((0 + 1 + 1 + 1) / 4)


def test_batch_lloyd_distortion_never_increases(rng):
    z = torch.cat([torch.randn(300, 2, generator=rng) + m for m in (torch.tensor([0, 0]), torch.tensor([5, 5]), torch.tensor([0, 6]))])
    res = fit_codebook(z, 8, iters=15, method="batch", progress=False)
    h = res.history
    assert all(b <= a + 1e-9 for a, b in zip(h, h[1:])), h


def test_ema_step_matches_algorithm_1():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 9.0]])
    c = torch.tensor([[2.0, 0.0], [0.0, 10.0], [100.0, 100.0]])
    gamma, eps = 0.9, 1e-5
    new, idx = ema_step(z, c, gamma, eps)
    assert idx.tolist() == [0, 0, 1]
    # e_0 <- 0.9·(2,0) + 0.1·(1+3, 0)/(2+ε);  e_1 <- 0.9·(0,10) + 0.1·(0,9)/(1+ε);  e_2 unused
    assert torch.allclose(new[0], torch.tensor([0.9 * 2 + 0.1 * 4 / (2 + eps), 0.0]))
    assert torch.allclose(new[1], torch.tensor([0.0, 0.9 * 10 + 0.1 * 9 / (1 + eps)]))
    assert torch.equal(new[2], c[2])


def test_minibatch_is_a_running_mean():
    c = torch.tensor([[0.0]])
    totals = torch.zeros(1)
    c, totals = minibatch_step(torch.tensor([[2.0], [4.0]]), c, totals)
    assert float(c) == pytest.approx(3.0)
    c, totals = minibatch_step(torch.tensor([[9.0]]), c, totals)
    assert float(c) == pytest.approx(5.0)  # mean of 2, 4, 9


def test_kmeans_pp_spreads_seeds(rng):
    blobs = torch.cat([torch.randn(200, 2, generator=rng) * 0.1 + torch.tensor([i * 10.0, 0]) for i in range(4)])
    seeds = kmeans_pp_init(blobs, 4, rng)
    assert len(set((seeds[:, 0] / 10).round().tolist())) == 4


def test_all_methods_reduce_distortion(rng):
    z = torch.rand(4000, 6, generator=rng)
    init = z[:32].clone()
    d0 = distortion(z, init)
    for m in ("batch", "minibatch", "ema"):
        res = fit_codebook(z, 32, iters=30, method=m, init=init, batch_size=512, progress=False)
        assert distortion(z, res.codebook) < d0, m
