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
# # 5.2 · Factorized, hyperprior, autoregressive: bits against decode time (§5.1–5.2)
#
# **What you will learn**
#
# - three ways to model the latents of the same kind of autoencoder, from the simplest to the sharpest:
#   a fixed density per channel (factorized prior, Ballé et al. ICLR 2017, arXiv:1611.01704), a
#   Gaussian whose scale is sent as side information (scale hyperprior, Ballé et al. ICLR 2018,
#   arXiv:1802.01436), and a Gaussian whose mean and scale also use the already-decoded neighbours
#   (autoregressive context, Minnen et al. NeurIPS 2018, arXiv:1809.02736);
# - what each costs to decode: the factorized and hyperprior decoders are parallel, the context model
#   must decode ŷ one spatial position after another;
# - how to read all of them on one rate–distortion plot with real bytes.
#
# Every number here comes from the bundled checkpoints through the same `compress` / `decompress`
# calls that `museumtok eval rd` uses. Families that are not bundled are simply absent.

# %% [markdown]
# ## Tóm tắt
#
# Mục 5.2 so ba cách mô hình hoá biến ẩn của cùng một loại codec: tiên nghiệm phân rã (mỗi kênh một
# mật độ cố định), siêu tiên nghiệm (thang $\sigma$ gửi kèm làm thông tin phụ) và mô hình ngữ cảnh tự
# hồi quy (dùng thêm các lân cận đã giải mã). Notebook mã hoá mọi ảnh bằng mọi codec học sâu có sẵn
# trong dự án, đo số byte thật, PSNR và thời gian giải mã, rồi vẽ tất cả trên cùng một đồ thị tốc
# độ–độ méo. Anh chị sẽ kiểm tra vì sao mô hình ngữ cảnh buộc phải giải mã tuần tự (tích chập có mặt
# nạ chỉ nhìn các vị trí phía trước), và học cách đọc bảng: thứ hạng ở đây phản ánh các bản lưu được
# huấn luyện ngắn trên CPU, chưa phải kết luận về kiến trúc.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | tiên nghiệm phân rã | factorized prior | $P(\hat{z})$ |
# | mô hình ngữ cảnh | context model | — |
# | tích chập có mặt nạ | masked convolution | — |
# | tính nhân quả | causality | — |
# | giá trị trung bình | mean | $\mu$ |
# | codec cổ điển | classical codecs (JPEG, WebP) | — |
# | bộ ảnh Kodak | Kodak set | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import time

import plotly.express as px
import torch
from IPython.display import Markdown, display
from ipywidgets import Dropdown, IntSlider, interact

import museumtok
from museumtok.metrics import psnr
from museumtok.paths import fast_mode
from museumtok.eval.rd import learned_codecs, rd_images

torch.set_num_threads(1)
FAST = fast_mode()
images = rd_images("kodak", 1 if FAST else 4)
if FAST:   # a 256×384 crop keeps the sequential decoder under a few seconds
    images = [(i, x[:, :256, :384]) for i, x in images]
families = learned_codecs()
print({f: sorted(n) for f, n in families.items()}, "on", len(images), "image(s)", tuple(images[0][1].shape))

# %% [markdown]
# ## 1 · Code every image with every bundled learned codec

# %%
rows, decoded = [], {}
for fam, names in families.items():
    for name in sorted(names)[: (1 if FAST else None)] if fam == "context" else sorted(names):
        codec = museumtok.load(name)
        for img_id, x in images:
            t0 = time.perf_counter()
            enc = codec.compress(x)
            t1 = time.perf_counter()
            x_hat = codec.decompress(enc.data)
            t2 = time.perf_counter()
            decoded[(name, img_id)] = x_hat.clamp(0, 1).half()               # kept for the slider below
            rows.append({"family": fam, "codec": name, "image": img_id, "bpp": enc.bpp,
                         "PSNR": float(psnr(x, x_hat)), "encode ms": 1e3 * (t1 - t0), "decode ms": 1e3 * (t2 - t1)})
from museumtok.cards import markdown_table  # noqa: E402

keys = ("bpp", "PSNR", "encode ms", "decode ms")
table = []
for name in dict.fromkeys(r["codec"] for r in rows):
    rs = [r for r in rows if r["codec"] == name]
    table.append({"family": rs[0]["family"], "codec": name, **{k: sum(r[k] for r in rs) / len(rs) for k in keys}})
display(Markdown(markdown_table(table)))
columns = {k: [r[k] for r in sorted(table, key=lambda r: r["bpp"])] for k in table[0]}   # for plotly

# %%
px.line(columns, x="bpp", y="PSNR", color="family", markers=True, hover_name="codec",
        title="rate–distortion (real bytes)")

# %%
px.scatter(columns, x="decode ms", y="PSNR", color="family", size="bpp", hover_name="codec", log_x=True,
           title="quality against decode time (marker size: bpp)")

# %% [markdown]
# ### Look at the pixels
# Pick a codec and an image: the original and the decoded file side by side (a 192 px detail, where
# the differences show), with the file's rate and PSNR. Compare the lowest-rate hyperprior with the
# highest-rate factorized model, or any codec with its neighbour in the table.

# %%
originals = dict(images)
image_ids = [i for i, _ in images]


def show_codec(codec_name=table[0]["codec"], image=0, top=0, left=0):
    img_id = image_ids[image]
    x, x_hat = originals[img_id], decoded[(codec_name, img_id)].float()
    r = next(r for r in rows if r["codec"] == codec_name and r["image"] == img_id)
    assert abs(float(psnr(x, x_hat)) - r["PSNR"]) < 0.05, "the PSNR in the table is this image's"
    t, l = min(top, x.shape[1] - 192), min(left, x.shape[2] - 192)
    pair = torch.cat([x[:, t:t + 192, l:l + 192], x_hat[:, t:t + 192, l:l + 192]], -1)
    return px.imshow(pair.permute(1, 2, 0).numpy(), title=f"{codec_name} on Kodak {img_id}: {r['bpp']:.3f} bpp, "
                     f"{r['PSNR']:.2f} dB (original | decoded)").update_layout(height=360)


interact(show_codec, codec_name=Dropdown(options=[r["codec"] for r in table], description="codec"),
         image=IntSlider(0, 0, len(images) - 1, description="image"),
         top=IntSlider(0, 0, max(0, images[0][1].shape[1] - 192), 32, description="top"),
         left=IntSlider(0, 0, max(0, images[0][1].shape[2] - 192), 32, description="left"));

# %%
show_codec(codec_name=table[-1]["codec"], image=len(images) - 1, top=32, left=64)   # the callback, other values

# %% [markdown]
# ## 2 · Why the context model is sequential
# Its 5×5 masked convolution sees only positions before the current one in raster order, so the
# decoder needs ŷ at (i, j−1), (i−1, ·)… before it can predict (μ, σ) at (i, j). We check that
# causality on the model class itself: changing one latent changes no prediction before it.

# %%
from museumtok.codecs.layers import MaskedConv2d  # noqa: E402

conv = MaskedConv2d(4, 8, 5, padding=2)
y = torch.randn(1, 4, 7, 7)
y2 = y.clone()
y2[0, :, 3, 3] += 10.0
with torch.no_grad():
    d = (conv(y) - conv(y2)).abs().sum(1)[0]          # (7, 7): where predictions changed
changed = torch.nonzero(d > 0).tolist()
assert all((i, j) > (3, 3) for i, j in changed), changed
print("positions whose prediction changed:", changed[:6], "… all after (3, 3) in raster order")

# %% [markdown]
# ## 3 · Reading the table
# The factorized prior pays nothing for side information but its densities cannot adapt to the image;
# the hyperprior spends a few percent of the file on ẑ and saves more than that on ŷ; the context
# model predicts μ and σ better again, at the price of a decoder that walks the latent grid one
# position at a time (a Python loop here, which is why its decode time is far above the others').
#
# That ordering is what the papers measure after millions of training steps on GPUs. The bundled checkpoints
# had tens of CPU minutes each, and the one trained last wins: `factorized-q4` (initialised from
# `hyperprior-q4`, then 20 more minutes) beats `hyperprior-q4` on Kodak, and `context-q3` (20 minutes from
# `hyperprior-q3`, on a third of the CPU) is below `hyperprior-q3`. Read the table as "what these
# checkpoints do", not as a verdict on the architectures; each card's "Training history" says how long
# each one trained.

# %%
if len(table) > 1:
    best = max(table, key=lambda r: r["PSNR"])
    slow = max(table, key=lambda r: r["decode ms"])
    display(Markdown(f"Highest PSNR: **{best['codec']}** at {best['bpp']:.3f} bpp; slowest decoder: **{slow['codec']}**."))
