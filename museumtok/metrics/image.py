"""Pixel metrics: PSNR, SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli & Bovik 2003).

Images are (N, 3, H, W) or (3, H, W) float tensors in [0, 1] (``data_range`` = 1). SSIM uses an
11×11 Gaussian window with σ = 1.5 and 'valid' filtering, the convention of the reference
implementations (scikit-image with ``gaussian_weights=True``, pytorch-msssim); the tests check
agreement with both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: MS-SSIM scale weights from Wang et al. 2003 (5 scales).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2 = 0.01, 0.03


def _batch(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x.unsqueeze(0) if x.ndim == 3 else x


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, shape (N,)."""
    x, y = _batch(x), _batch(y)
    return (x - y).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR = 10·log10(MAX² / MSE) in dB, per image, shape (N,). Identical images give +inf."""
    m = mse(x, y)
    return 10.0 * torch.log10(data_range**2 / m)


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of each channel. (N, C, H, W) -> (N, C, H-k+1, W-k+1)."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _ssim_cs(x, y, data_range, win):
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mu_x**2
    syy = _filter(y * y, win) - mu_y**2
    sxy = _filter(x * y, win) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs
    return ssim_map.flatten(2).mean(-1), cs.flatten(2).mean(-1)  # (N, C) each


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image (averaged over channels), shape (N,)."""
    x, y = _batch(x), _batch(y)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}×{win_size} pixels, got {tuple(x.shape[-2:])}")
    win = _gaussian_window(win_size, sigma, x.device)
    s, _ = _ssim_cs(x, y, data_range, win)
    return s.mean(1)


def ms_ssim_scales(size: int, win_size: int = 11) -> int:
    """How many of the 5 MS-SSIM scales fit an image whose short side is ``size`` pixels.

    Each scale halves the image and the coarsest must still hold one ``win_size`` window, so the
    full 5 scales need a short side of at least 161 px.
    """
    n = 0
    while n < len(MS_SSIM_WEIGHTS) and size >= win_size:
        n += 1
        size = (size + 1) // 2  # avg-pool by 2 with the odd side padded
    return n


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """MS-SSIM per image, shape (N,).

    With 5 scales this is the standard definition (checked against pytorch-msssim). Images too small
    for 5 scales (short side ≤ 160 px, e.g. the 64 and 128 px working sizes) use the scales that fit,
    with the weights renormalised to sum to the same total; this is stated wherever it is reported.
    """
    x, y = _batch(x), _batch(y)
    n = min(len(weights), ms_ssim_scales(min(x.shape[-2:]), win_size))
    if n == 0:
        raise ValueError(f"MS-SSIM needs images of at least {win_size}×{win_size} pixels")
    w = torch.tensor(weights[:n], dtype=torch.float64, device=x.device)
    w = w * (sum(weights) / w.sum())
    win = _gaussian_window(win_size, sigma, x.device)
    values = []
    for i in range(n):
        s, cs = _ssim_cs(x, y, data_range, win)
        if i < n - 1:
            values.append(torch.relu(cs))
            pad = (x.shape[-2] % 2, x.shape[-1] % 2)  # pytorch-msssim's convention for odd sizes
            x = F.avg_pool2d(x, 2, padding=pad)
            y = F.avg_pool2d(y, 2, padding=pad)
        else:
            values.append(torch.relu(s))
    stack = torch.stack(values, 0).double()  # (n, N, C)
    out = torch.prod(stack ** w.view(-1, 1, 1), dim=0)  # (N, C)
    return out.mean(1).float()


def sharpness_ratio(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """High-frequency energy of ``x_hat`` over that of ``x`` (Laplacian energy), per image.

    1.0 means as sharp as the original, below 1 blurrier (VQ-VAE's typical failure), above 1 noisier.
    """
    x_hat, x = _batch(x_hat), _batch(x)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device).view(1, 1, 3, 3)

    def energy(t):
        g = t.mean(1, keepdim=True)
        return F.conv2d(g, lap).pow(2).flatten(1).mean(1)

    return energy(x_hat) / energy(x).clamp_min(1e-12)


def psnr_from_mse(m: float, data_range: float = 1.0) -> float:
    return float("inf") if m == 0 else 10 * math.log10(data_range**2 / m)
