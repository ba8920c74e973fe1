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
#
# > **Warning: the review swaps y and z in §5.1.** It writes "latent z with a hyper-latent y", z ∼ N(0,
# > σ²(y)). In Ballé et al. (2018), and in this notebook, CompressAI and the package, it is the other way
# > round: **y = g_a(x) is the latent** that carries the image, **z = h_a(|y|) is the hyper-latent**, the
# > side information from which σ = h_s(ẑ) is decoded. Read the review's §5.1 with the letters exchanged
# > (errata `s5-1-notation`, `docs/glossary.md` §11).

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
# | hàm Lagrange | Lagrangian (rate–distortion cost) | $J = D + \lambda R$ |
# | hệ số Lagrange | Lagrange multiplier (trade-off weight) | $\lambda$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import json
import math

import numpy as np
import plotly.express as px
import torch
from IPython.display import Markdown, display
from ipywidgets import FloatLogSlider, IntSlider, interact
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
show_channel(rank=min(5, y_hat.shape[0] - 1))      # the callback once more, with another channel

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
# ## 3b · Why a predicted σ saves bits
#
# The range coder spends −log2 P(ŷ | σ) bits on an element, where P is the probability mass of its
# quantization bin, the interval [ŷ − ½, ŷ + ½] under a zero-mean Gaussian of scale σ:
# P(ŷ | σ) = Φ((ŷ + ½)/σ) − Φ((ŷ − ½)/σ). If σ is small where ŷ is 0 (flat sky), almost all the mass
# sits in the bin around 0 and a zero costs a fraction of a bit. If σ is large where ŷ is large
# (texture), the mass is spread so a large value is not a surprise either. One σ for a whole channel
# must compromise: too small for the textures (a large ŷ lands in the far tail and costs many bits),
# too large for the flat parts (even a zero costs bits). **A σ that matches the local scale
# concentrates the mass on the values that actually occur**, and the hyperprior pays for that
# knowledge with the bits of ẑ. Move the sliders: the bits of one element as a function of σ.

# %%
def show_bits(y=0, sigma=1.0):
    """Bits −log2 P(ŷ | σ) of one element ŷ = y, against σ, with the chosen σ marked."""
    ss = torch.logspace(-1, 1.5, 200, dtype=torch.float64)
    bits = -torch.log2(gc.likelihood(torch.full_like(ss, float(y)), ss))
    ref = -np.log2(np.maximum(norm.cdf((y + 0.5) / sigma) - norm.cdf((y - 0.5) / sigma), 1e-9))
    here = float(-torch.log2(gc.likelihood(torch.tensor([float(y)], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64))))
    assert abs(here - ref) < 1e-6, "−log2 of the bin's Gaussian mass (scipy)"
    fig = px.line(x=ss.numpy(), y=bits.numpy(), log_x=True, labels={"x": "σ", "y": f"bits for ŷ = {y}"},
                  title=f"ŷ = {y}, σ = {sigma:.2f}: {here:.2f} bits (the cheapest σ for ŷ = {y} is about {float(ss[bits.argmin()]):.2f})")
    fig.add_scatter(x=[sigma], y=[here], mode="markers", marker=dict(size=12, color="crimson"), showlegend=False)
    fig.update_layout(height=320)
    return fig


interact(show_bits, y=IntSlider(0, -8, 8, 1, description="ŷ"),
         sigma=FloatLogSlider(value=1.0, base=10, min=-1, max=1.5, step=0.05, description="σ"));

# %%
show_bits(y=4, sigma=0.3)                       # a large value under a small σ: the far tail, many bits

# %% [markdown]
# On real artworks: the bits of ŷ under the predicted σ = h_s(ẑ), against **one σ per channel**
# learned from six training artworks (the best a non-adaptive Gaussian model of each channel can do,
# as a factorized prior would), and against the best single σ per channel fitted to each image itself
# with hindsight (an oracle that would also have to send its 96 values). Also σ twice or half too large.

# %%
grid_s = torch.logspace(-1, 1.7, 80, dtype=torch.float64)


def channel_bits(yh, s_per_channel):
    """Bits of ŷ (C, h, w) when every element of channel c is coded with the scale s_per_channel[c]."""
    return float(-torch.log2(gc.likelihood(yh, s_per_channel[:, None, None].expand_as(yh))).sum())


train_y = torch.cat([codec.analyse(working_image(load_image(e.find()).image, SIZE).x)["y_hat"][0].double().flatten(1)
                     for e in load_catalog(split="train", collection="artworks")[:6]], 1)          # (C, n)
table = torch.stack([-torch.log2(gc.likelihood(train_y, torch.full_like(train_y, float(s_)))).sum(1) for s_ in grid_s])
s_learned = grid_s[table.argmin(0)]                                     # one σ per channel, from other images
rows, tot = [], {"pred": 0.0, "learned": 0.0}
for e in load_catalog(split="test", collection="artworks")[:3]:
    ae = codec.analyse(working_image(load_image(e.find()).image, SIZE).x)
    yh = ae["y_hat"][0].double()
    pred, side = float(ae["bits_y"].sum()), float(ae["bits_z"].sum())
    learned = channel_bits(yh, s_learned)
    hind = float(torch.stack([-torch.log2(gc.likelihood(yh, torch.full_like(yh, float(s_)))).sum((1, 2))
                              for s_ in grid_s]).min(0).values.sum())
    rows.append(f"| {e.title[:40]} | {pred:.0f} + {side:.0f} = **{pred + side:.0f}** | {learned:.0f} | {hind:.0f} | "
                f"{1 - (pred + side) / learned:+.0%} |")
    tot["pred"] += pred + side
    tot["learned"] += learned
display(Markdown("| artwork | predicted σ: ŷ + ẑ bits | one σ per channel, learned | one σ per channel, hindsight | "
                 "saved by the hyperprior |\n|---|---|---|---|---|\n" + "\n".join(rows)))
assert tot["pred"] < tot["learned"], "over these artworks the local σ saves more than ẑ costs"

sig = sigma.double().clamp_min(gc.scale_min)
bits_pred = float(-torch.log2(gc.likelihood(y_hat.double(), sig)).sum())
assert abs(bits_pred - float(a["bits_y"].sum())) < 1e-3 * bits_pred          # the package's own count
scaled = {f: float(-torch.log2(gc.likelihood(y_hat.double(), (sig * f).clamp_min(gc.scale_min))).sum()) for f in (0.5, 2.0)}
print(f"{entry.title}: ŷ costs {bits_pred:.0f} bits with the predicted σ, {scaled[2.0]:.0f} with 2σ, {scaled[0.5]:.0f} with σ/2")
assert bits_pred < min(scaled.values())

# %% [markdown]
# The saving depends on the painting: a work that is busy everywhere (the School of Athens) is coded
# as well or slightly better by one scale per channel (this CPU-trained h_s misjudges it), while one with calm areas next to detailed ones (van Eyck,
# Vermeer) saves a large share, because there the right σ differs from place to place.

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

# %% [markdown]
# ## 6 · λ: trading bits for distortion
#
# Each learned codec is trained for one point of the rate–distortion trade-off by minimising
# **L = R + λ·D** (§3.2), with R the bits per pixel (from the likelihoods) and D the distortion,
# here 255²·MSE as in CompressAI. λ is the price of distortion in bits: a **larger λ makes distortion
# expensive, so the model spends more bits and distorts less**; a smaller λ gives smaller files and
# blurrier images. The four bundled hyperpriors were trained at λ = 0.0018, 0.0035, 0.0067 and 0.013
# (CompressAI's quality 1–4). The loss the trainer minimises, checked by hand on one crop, then the
# four models on this artwork with real bytes:

# %%
from museumtok.paths import CHECKPOINT_DIR  # noqa: E402
from museumtok.train.neural_codecs import rd_loss  # noqa: E402

names = [f"hyperprior-q{q}" for q in (1, 2, 3, 4)]
lams = {n: json.loads((CHECKPOINT_DIR / n / "config.json").read_text())["lmbda"] for n in names}
xc = x[None, :, :128, :128]
with torch.no_grad():
    out = codec(xc)
    L = rd_loss(out, xc, lams["hyperprior-q3"])
    bpp_hand = sum(float(-torch.log2(p).sum()) for p in out["likelihoods"].values()) / (128 * 128)
    mse_hand = float(((out["x_hat"] - xc) ** 2).mean())
assert math.isclose(float(L["loss"]), bpp_hand + lams["hyperprior-q3"] * 255**2 * mse_hand, rel_tol=1e-5)

points = {}
for n in names:
    c = museumtok.load(n)
    e = c.compress(x)
    xh = c.decompress(e.data)
    points[n] = {"λ": lams[n], "bpp": e.bpp, "mse": float(((xh - x) ** 2).mean()), "psnr": float(psnr(x, xh)), "x_hat": xh}
bpps = [points[n]["bpp"] for n in names]
mses = [points[n]["mse"] for n in names]
assert bpps == sorted(bpps) and mses == sorted(mses, reverse=True), "larger λ: more bits, less distortion"
display(Markdown("| codec | λ | bpp (real bytes) | PSNR (dB) | L = R + λ·255²·MSE at its own λ |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {n} | {p['λ']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['bpp'] + p['λ'] * 255**2 * p['mse']:.3f} |" for n, p in points.items())))
px.line(x=bpps, y=[points[n]["psnr"] for n in names], markers=True, text=[f"λ={lams[n]}" for n in names],
        labels={"x": "bpp (real bytes)", "y": "PSNR (dB)"}, title="four λ, one artwork: the rate–distortion curve")


# %%
def show_lambda(q=3):
    """The artwork coded by the model trained at λ of quality ``q`` (a 128 px detail)."""
    n = f"hyperprior-q{q}"
    p = points[n]
    crop = torch.cat([x[:, :128, :128], p["x_hat"][:, :128, :128]], -1)
    return px.imshow(crop.permute(1, 2, 0).numpy(), title=f"λ = {p['λ']}: {p['bpp']:.3f} bpp, {p['psnr']:.2f} dB "
                     "(original | decoded, top-left 128 px)").update_layout(height=330)


interact(show_lambda, q=IntSlider(3, 1, 4, description="quality"));

# %%
show_lambda(q=1)
