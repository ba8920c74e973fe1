"""Metrics agree with reference libraries on the same inputs."""
import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as ref_ms_ssim
from pytorch_msssim import ssim as ref_ssim
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from museumtok.metrics import (
    LPIPSUnavailable, bits_from_bytes, bpp, codebook_stats, dead_codes, lpips_available, lpips_distance,
    ms_ssim, ms_ssim_scales, perplexity, psnr, raw_token_bits, sharpness_ratio, ssim,
)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 192, 176, generator=g)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_psnr_matches_skimage(pair):
    x, y = pair
    ref = [peak_signal_noise_ratio(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), data_range=1) for a, b in zip(x, y)]
    assert torch.allclose(psnr(x, y), torch.tensor(ref, dtype=torch.float32), atol=1e-4)
    assert math.isinf(float(psnr(x, x)[0]))


def test_ssim_matches_skimage_and_pytorch_msssim(pair):
    x, y = pair
    ours = ssim(x, y)
    assert torch.allclose(ours, ref_ssim(x, y, data_range=1, size_average=False), atol=1e-5)
    sk = structural_similarity(x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy(), channel_axis=2,
                               data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(float(ours[0]) - sk) < 1e-4


def test_ms_ssim_matches_pytorch_msssim(pair):
    x, y = pair
    assert torch.allclose(ms_ssim(x, y), ref_ms_ssim(x, y, data_range=1, size_average=False), atol=1e-5)


def test_ms_ssim_small_images_use_fewer_scales():
    assert [ms_ssim_scales(s) for s in (64, 128, 160, 161, 256)] == [3, 4, 4, 5, 5]
    x = torch.rand(1, 3, 64, 64)
    assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-5)


def test_perplexity_uniform_is_K_and_collapse_is_1():
    K = 64
    assert perplexity(torch.arange(K).repeat(10), K) == pytest.approx(K)
    assert perplexity(torch.zeros(500, dtype=torch.long), K) == pytest.approx(1.0)
    idx = torch.randint(0, K, (5000,), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=K).numpy()
    assert perplexity(idx, K) == pytest.approx(math.exp(scipy_entropy(counts)), rel=1e-9)


def test_codebook_stats_and_dead_codes():
    idx = torch.tensor([0, 0, 1, 3])
    st = codebook_stats(idx, 5)
    assert (st.used, st.dead, st.usage) == (3, 2, 0.6)
    assert dead_codes(torch.bincount(idx, minlength=5)).tolist() == [2, 4]


def test_rates():
    assert bits_from_bytes(b"abc") == 24
    assert bpp(1024, 32, 32) == 1.0
    assert raw_token_bits(256, 1024) == 2560


def test_sharpness_ratio():
    x = torch.rand(1, 3, 64, 64)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert float(sharpness_ratio(x, x)) == pytest.approx(1.0)
    assert float(sharpness_ratio(blurred, x)) < 0.5


def test_lpips_available_or_clear_error():
    ok, reason = lpips_available()
    x = torch.rand(1, 3, 64, 64)
    if ok:
        d = lpips_distance(x, x)
        assert float(d) == pytest.approx(0.0, abs=1e-6)
    else:
        assert "alexnet-owt-7be5be79.pth" in reason and "checkpoints" in reason
        with pytest.raises(LPIPSUnavailable, match="alexnet"):
            lpips_distance(x, x)
