"""Rate–distortion basics behind notebooks 01 and 03: closed forms, scalar quantizer, Lagrangian, codec sweeps."""
import math

import pytest
import torch

from museumtok.codecs.pillow import PillowCodec
from museumtok.eval.metrics import codec_rd_points, mean_rd_curve
from museumtok.llm.budget import ContextBudget
from museumtok.metrics.rate import HIGH_RATE_GAP_BITS, gaussian_distortion, gaussian_rate, lagrangian_best
from museumtok.quantize.scalar import scalar_rd_point, uniform_quantize
from museumtok.viz import patch_codebook_image, voronoi_figure


def test_gaussian_rd_closed_form():
    assert gaussian_rate(0.25) == pytest.approx(1.0)          # ½ log2(1/0.25)
    assert gaussian_rate(2.0) == 0.0                          # D above σ²: nothing to send
    assert gaussian_distortion(3.0, variance=4.0) == pytest.approx(4.0 / 64)
    assert gaussian_rate(gaussian_distortion(1.7, 2.0), 2.0) == pytest.approx(1.7)
    assert HIGH_RATE_GAP_BITS == pytest.approx(0.2546, abs=1e-4)
    with pytest.raises(ValueError):
        gaussian_rate(0.0)


def test_uniform_scalar_quantizer_rate_is_index_entropy():
    x = torch.arange(8, dtype=torch.float64).repeat(50)       # 8 equiprobable integers
    p = scalar_rd_point(x, 1.0)
    assert p.rate == pytest.approx(3.0) and p.distortion == 0.0
    p2 = scalar_rd_point(x, 2.0)                              # pairs merge (round half to even)
    x_hat, q = uniform_quantize(x, 2.0)
    assert torch.equal(x_hat, q.double() * 2)
    assert p2.distortion == pytest.approx(float((x - x_hat).pow(2).mean()))
    assert p2.rate < 3.0
    with pytest.raises(ValueError):
        uniform_quantize(x, 0)


def test_uniform_quantizer_above_bound_and_high_rate_gap():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = scalar_rd_point(x, 0.05)
    assert p.rate > gaussian_rate(p.distortion)
    assert p.rate - gaussian_rate(p.distortion) == pytest.approx(HIGH_RATE_GAP_BITS, abs=0.02)


def test_lagrangian_picks_the_minimum():
    R, D = [4.0, 2.0, 1.0], [0.01, 0.1, 0.4]
    assert lagrangian_best(R, D, 0.001) == 0                  # cheap bits: take quality
    assert lagrangian_best(R, D, 1.0) == 2                    # dear bits: take the smallest rate
    assert lagrangian_best(R, D, 0.1) == 1                    # J = 0.41, 0.30, 0.50


def test_max_images():
    b = ContextBudget(context=4096, images=10, M=256, text_tokens=1995)
    assert b.max_images() == (4096 - 1995) // 258 == 8
    assert ContextBudget(4096, b.max_images(), 256, 1995).fits
    assert not ContextBudget(4096, b.max_images() + 1, 256, 1995).fits
    assert ContextBudget(100, 1, 256, 200).max_images() == 0


def test_codec_rd_points_and_mean_curve():
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    pts = codec_rd_points(PillowCodec("JPEG"), x, [20, 80])
    assert len(pts) == 4 and {p["image"] for p in pts} == {0, 1}
    for p in pts:
        assert p["bits"] % 8 == 0 and p["bpp"] == pytest.approx(p["bits"] / (32 * 48))
    curve = mean_rd_curve(pts)
    assert [c["quality"] for c in curve] == [20, 80]
    q20 = [p for p in pts if p["quality"] == 20]
    assert curve[0]["psnr"] == pytest.approx(sum(p["psnr"] for p in q20) / 2)
    assert curve[1]["bpp"] > curve[0]["bpp"]


def test_figures():
    z = torch.randn(50, 2)
    fig = voronoi_figure(z, z[:4], resolution=20)
    assert len(fig.data) == 3 and fig.data[0].z.shape == (20, 20)
    cb = torch.rand(40, 3 * 8 * 8)
    img = patch_codebook_image(cb, 8, columns=16, scale=1)
    assert img.size == (16 * 9, 3 * 9)
