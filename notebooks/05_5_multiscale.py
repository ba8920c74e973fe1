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
# # 5.5 · Multi-scale tokens: a coarse grid, then what it missed (§5.5)
#
# The review's §5.5 describes a tokenizer with "two compression levels, 8× and 16×, 64 or 256
# tokens per image" and credits Idefics2 with it. Idefics2 has no such tokenizer (one learned
# pooling to 64 continuous tokens, 320 with image splitting; see the errata), but the idea stands
# and is older: VQ-VAE-2 (Razavi et al. 2019) codes an image at two scales, and VAR (Tian et al.
# 2024) codes each scale as the *residual* the coarser ones left.
#
# `multiscale-k1000` (128 px working image, FSQ with K = 1000 codes on both levels):
#
# - **coarse**: an 8×8 grid, 64 tokens — a complete, blurry image on its own;
# - **fine**: a 16×16 grid of the residual, 256 more tokens — detail only.
#
# M = 64 or M = 64 + 256 = 320, from one model and one decoder.
#
# **What you will learn**
#
# - that the coarse tokens are a prefix of the full sequence (stop reading after 64 and decode);
# - what the fine level adds, image by image and on average;
# - how this compares with single-scale tokenizers at the same M.

# %% [markdown]
# ## Tóm tắt
#
# Mục 5.5 bàn về token đa tỉ lệ: một lưới thô cho cả ảnh, rồi một lưới mịn cho phần chi tiết mà lưới
# thô bỏ sót. (Idefics2 không có bộ token hoá như bài tổng quan mô tả, nhưng ý tưởng này có từ
# VQ-VAE-2 và VAR.) Notebook dùng `multiscale-k1000`: 64 token thô đã đủ giải mã thành một ảnh mờ,
# thêm 256 token phần dư thì ảnh có đủ chi tiết — $M = 64$ hoặc $M = 320$ từ cùng một mô hình. Anh chị
# sẽ xem mức mịn thêm vào những gì, so với các bộ token hoá một tỉ lệ ở cùng $M$, và duyệt qua các tác
# phẩm.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | token đa tỉ lệ | multi-scale tokens | — |
# | phần dư | residual | — |
# | mức thô | coarse level | — |
# | mức mịn | fine level | — |
# | nội suy song lập phương | bicubic interpolation | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import torch
from IPython.display import Markdown, display
from ipywidgets import Dropdown, interact

import museumtok
from museumtok import registry
from museumtok.data.catalog import load_catalog
from museumtok.data.images import load_image, tensor_to_pil, working_image
from museumtok.eval.metrics import evaluate_tokenizer, image_metrics
from museumtok.paths import fast_mode

FAST = fast_mode()
torch.set_num_threads(1)
tok = museumtok.load("multiscale-k1000")

# %% [markdown]
# ## 1. One image, both levels

# %%
entry = load_catalog(split="test", collection="artworks")[1]
t64 = tok.encode(entry.find(), M=64)
t320 = tok.encode(entry.find(), M=320)
assert torch.equal(t320.flat()[:64], t64.flat()), "the coarse tokens are a prefix"
assert t320.levels == ["coarse"] * 64 + ["fine"] * 256
assert t320.bits_raw == 320 * math.log2(tok.K)
x = t64.working.x
rows = []
for t in (t64, t320):
    x_hat = tok.decode(t)
    p = float(image_metrics(x[None], x_hat[None], with_lpips=False)["psnr"])
    rows.append((t.M, p, t.bits_raw, x_hat))
display(Markdown(f"**{entry.title}** — " + " · ".join(f"M = {M}: {p:.2f} dB, {b:.0f} bits" for M, p, b, _ in rows)))
display(tensor_to_pil(x).resize((256, 256)), *[tensor_to_pil(r[3]).resize((256, 256)) for r in rows])

# %% [markdown]
# The fine level's contribution: |x̂₃₂₀ − x̂₆₄|, brighter where the residual tokens changed the image.

# %%
diff = (rows[1][3] - rows[0][3]).abs().mean(0, keepdim=True).repeat(3, 1, 1)
tensor_to_pil((diff / diff.max().clamp_min(1e-6))).resize((256, 256))

# %% [markdown]
# ## 2. Against single-scale tokenizers at the same M
#
# Held-out artworks; the `lloyd-patch` grid tokenizers give 64 tokens at 64 px and 256 at 128 px.

# %%
SET, LIMIT = "artworks-test", (4 if FAST else None)
table = []
for name in registry.names("tokenizer"):
    other = registry.load(name)
    for M in other.supported_M:
        if M in (64, 256, 320) or (M in (16, 32, 48) and not FAST):
            r = evaluate_tokenizer(other, SET, M, limit=LIMIT)
            table.append((name, M, r["size"], r["psnr"], r["bpp"]))
table.sort(key=lambda r: (r[1], -r[3]))
display(Markdown("| tokenizer | M | px | PSNR (dB) | bpp |\n|---|---|---|---|---|\n"
                 + "\n".join(f"| {n} | {M} | {s} | {p:.2f} | {b:.3f} |" for n, M, s, p, b in table)))
ms = {M: p for n, M, _, p, _ in table if n == "multiscale-k1000"}
assert ms[320] > ms[64], "the fine level must add detail"


# %% [markdown]
# Those rows mix image sizes (64 tokens of lloyd-patch describe a 64 px image). At the **same M and
# the same 128 px output**, decode the 64 px tokenizers and upscale them (bicubic) before measuring:

# %%
import torch.nn.functional as F  # noqa: E402

from museumtok.data.dataset import eval_batch  # noqa: E402

x128, _ = eval_batch(SET, 128, LIMIT)
x64, _ = eval_batch(SET, 64, LIMIT)
same = []
for name, M in (("lloyd-patch-k1024", 64), ("anym-k1000", 64), ("multiscale-k1000", 64),
                ("lloyd-patch-k1024", 256), ("multiscale-k1000", 320)):
    if name not in registry.names("tokenizer"):
        continue
    other = registry.load(name)
    S = other.working_size(M)
    x_in = x64 if S == 64 else x128
    x_hat = other.decode_indices(other.encode_tensor(x_in, M), M).clamp(0, 1)
    if S != 128:
        x_hat = F.interpolate(x_hat, size=128, mode="bicubic", align_corners=False).clamp(0, 1)
    same.append((name, M, S, float(image_metrics(x128, x_hat, with_lpips=False)["psnr"].mean())))
display(Markdown("| tokenizer | M | working px | PSNR vs the 128 px image (dB) |\n|---|---|---|---|\n"
                 + "\n".join(f"| {n} | {M} | {S} | {p:.2f} |" for n, M, S, p in same)))

# %% [markdown]
# ## 3. Browse

# %%
def show(image=0):
    e = load_catalog(split="test", collection="artworks")[image]
    w = working_image(load_image(e.find()).image, 128)
    outs = [tok.decode_indices(tok.encode_tensor(w.x[None], M), M)[0] for M in tok.supported_M]
    display(Markdown(f"**{e.title}** — original, M = 64, M = 320"))
    display(*[tensor_to_pil(v).resize((192, 192)) for v in [w.x, *outs]])


interact(show, image=Dropdown(options=list(range(3 if FAST else 15)), value=0))

# %%
show(image=1)      # the callback once more, with other values

# %% [markdown]
# **Take-away.** Residual levels make M a choice at read time: keep 320 tokens in the archive,
# send 64 when the context is tight, and the same decoder handles both.
