# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5.1 · The scale hyperprior: where the bits go (§5.1–5.2)
#
# **What you will learn**
#
# - how a learned codec turns an artwork into a real bitstream: y = g_a(x), z = h_a(|y|), the integers
#   ŷ and ẑ, and σ = h_s(ẑ), which tells the range coder how surprised to be by each element of ŷ
#   (Ballé, Minnen, Singh, Hwang & Johnston, ICLR 2018, arXiv:1802.01436);
# - that the bits estimated from the model's likelihoods, −Σ log2 P(ŷ | σ) − Σ log2 P(ẑ), are the
#   bits the range coder really writes (within about 1 %);
# - where the bits go on a painting: a bits-per-pixel map, and how much the side information ẑ costs.
#
# ```
# x ──g_a──▶ y ──Q──▶ ŷ ────────────────────────────────▶ g_s ──▶ x̂
#            └─|·|─h_a──▶ z ──Q──▶ ẑ ──h_s──▶ σ ──▶ P(ŷ | σ) ──▶ range coder ──▶ bytes
#                                  └──▶ factorized P(ẑ) ──▶ range coder ──▶ bytes (side information)
# ```
#
# The model is the bundled `hyperprior-q3` (N = 64, M = 96, trained on CPU for minutes, not days):
# expect it well below CompressAI's published curve; the mechanics are the same.

# %% [markdown]
# ## Tóm tắt
#
# Mục 5.1 giới thiệu codec nơ-ron có siêu tiên nghiệm (Ballé et al. 2018): thay vì sinh token cho LLM,
# nó nén ảnh thành một dòng bit thật. Notebook đi qua từng bước: $y = g_a(x)$, $z = h_a(|y|)$, làm
# tròn thành $\hat{y}$ và $\hat{z}$, rồi $\sigma = h_s(\hat{z})$ cho bộ mã hoá dải biết mỗi phần tử
# của $\hat{y}$ có thể lớn đến đâu. Anh chị sẽ kiểm tra công thức xác suất $P(\hat{y} \mid \sigma)$,
# thấy số bit ước lượng từ mô hình khớp với số byte thật ghi ra (sai khác khoảng 1%), và xem bản đồ
# bit trên bức tranh: vùng nhiều chi tiết tốn bit, vùng phẳng gần như không tốn. Lưu ý ký hiệu:
# notebook theo bài báo ($y$ là biến ẩn, $z$ là siêu biến ẩn), ngược với §5.1 của bài tổng quan.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | codec | codec | — |
# | dòng bit | bitstream | — |
# | tiêu đề tệp | header | — |
# | biến đổi phân tích | analysis transform | $g_a$ |
# | biến đổi tổng hợp | synthesis transform | $g_s$ |
# | biến ẩn đã làm tròn | quantized (rounded) latent | $\hat{y}$ |
# | siêu tiên nghiệm | hyperprior | — |
# | siêu biến ẩn | hyper-latent | $z$, $\hat{z}$ |
# | biến đổi siêu phân tích | hyper-analysis transform | $h_a$ |
# | biến đổi siêu tổng hợp | hyper-synthesis transform | $h_s$ |
# | thông tin phụ | side information | $\hat{z}$ |
# | mô hình entropy | entropy model | $p_\theta$ |
# | độ lệch chuẩn | standard deviation (scale) | $\sigma$ |
# | hàm phân phối tích luỹ chuẩn | standard normal CDF | $\Phi$ |
# | bản đồ bit | bits-per-pixel map | — |
# | số kênh | number of channels | $N$, $M$ (codec) |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import numpy as np
import plotly.express as px
import torch
from IPython.display import Markdown, display
from ipywidgets import IntSlider, interact
from scipy.stats import norm

import museumtok
from museumtok.data import load_image, working_image
from museumtok.data.catalog import load_catalog
from museumtok.metrics import psnr
from museumtok.paths import fast_mode

torch.set_num_threads(1)
FAST = fast_mode()
SIZE = 256 if FAST else 512          # the artwork is coded as a SIZE×SIZE centre crop
codec = museumtok.load("hyperprior-q3")
entry = load_catalog(split="test", collection="artworks")[0]
x = working_image(load_image(entry.find()).image, SIZE).x            # (3, SIZE, SIZE) in [0, 1]
print(f"{entry.title} — {entry.artist}; {SIZE}×{SIZE} px; model {codec.cfg}")

# %% [markdown]
# ## 1 · A real bitstream
# `compress` writes a 5-byte header and the range coder's words; `decompress` reads them back.

# %%
enc = codec.compress(x)
x_hat = codec.decompress(enc.data)
print(f"{len(enc.data)} bytes = {enc.bpp:.3f} bpp, PSNR {float(psnr(x, x_hat)):.2f} dB")
px.imshow(torch.cat([x, x_hat], -1).permute(1, 2, 0).numpy(), title="original | decoded from the bytes")

# %% [markdown]
# ## 2 · ŷ, ẑ and σ
# `analyse` runs the same path as `compress` and keeps the intermediate tensors.

# %%
a = codec.analyse(x)
y_hat, z_hat, sigma = a["y_hat"][0], a["z_hat"][0], a["sigma"][0]
print("ŷ", tuple(y_hat.shape), " ẑ", tuple(z_hat.shape), " σ", tuple(sigma.shape))
print(f"ŷ: {float((y_hat == 0).float().mean()):.0%} zeros;  ẑ: {float((z_hat == 0).float().mean()):.0%} zeros")
order = torch.argsort(a["bits_y"][0].sum((1, 2)), descending=True)   # channels by the bits they spend


def show_channel(rank=0):
    c = int(order[rank])
    fig = px.imshow(torch.stack([y_hat[c], sigma[c].float()]).numpy(), facet_col=0, color_continuous_scale="RdBu_r",
                    title=f"channel {c} (rank {rank} by bits): ŷ and σ")
    fig.layout.annotations[0].text, fig.layout.annotations[1].text = "ŷ", "σ = h_s(ẑ)"
    fig.show()


interact(show_channel, rank=IntSlider(0, 0, y_hat.shape[0] - 1, 1));

# %%
px.imshow(z_hat[: min(16, z_hat.shape[0])].numpy(), facet_col=0, facet_col_wrap=8,
          title="the hyper-latent ẑ (first 16 channels): the side information", color_continuous_scale="RdBu_r")

# %% [markdown]
# ## 3 · The formula, checked
# P(ŷ | σ) = Φ((ŷ + ½)/σ) − Φ((ŷ − ½)/σ), checked against `scipy.stats.norm`.

# %%
gc = codec.gaussian_conditional
yy, ss = y_hat.double().flatten()[:5000], sigma.double().flatten()[:5000].clamp_min(gc.scale_min)
ref = norm.cdf((yy.numpy() + 0.5) / ss.numpy()) - norm.cdf((yy.numpy() - 0.5) / ss.numpy())
ours = gc.likelihood(yy, ss).numpy()
assert np.allclose(ours, np.maximum(ref, 1e-9), rtol=1e-6, atol=1e-12)
print("P(ŷ | σ) agrees with scipy on", len(yy), "elements")

# %% [markdown]
# ## 4 · Estimated bits against the bytes written

# %%
est = {k: float(v.sum()) for k, v in (("ŷ", a["bits_y"]), ("ẑ", a["bits_z"]))}
total_est = sum(est.values())
real = enc.bits
display(Markdown(f"| | bits |\n|---|---|\n| −Σ log2 P(ŷ given σ) | {est['ŷ']:.0f} |\n| −Σ log2 P(ẑ) | {est['ẑ']:.0f} |\n"
                 f"| estimated total | {total_est:.0f} |\n| real bitstream (header included) | {real} |\n"
                 f"| side information share | {est['ẑ'] / total_est:.1%} |"))
assert abs(real - total_est) <= 0.01 * total_est + 128, (real, total_est)

# %% [markdown]
# ## 5 · Where the bits go
# Each element of ŷ covers 16×16 pixels and each element of ẑ 64×64; spreading their bits over those
# pixels gives a bits-per-pixel map whose sum is the whole file (up to the header).

# %%
bmap = a["bpp_map"]
assert math.isclose(float(bmap.sum()), total_est, rel_tol=1e-6)
fig = px.imshow(bmap[:SIZE, :SIZE].numpy(), color_continuous_scale="magma", title=f"bits per pixel (mean {float(bmap.mean()):.3f})")
fig.show()
blocks = bmap.reshape(SIZE // 16, 16, SIZE // 16, 16).sum((1, 3)).flatten().sort(descending=True).values
top = float(blocks[: len(blocks) // 10].sum() / blocks.sum())
print(f"the busiest 10% of 16×16 blocks take {top:.0%} of the bits")

# %% [markdown]
# The bits follow the detail: textures, edges and faces are expensive, flat sky and dark varnish are
# almost free. A hyperprior spends a few percent on ẑ to tell the coder *where* those regions are.
