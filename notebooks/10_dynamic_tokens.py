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
# # 10 · Dynamic token counts: how few tokens can an artwork survive? (§10.1)
#
# The review's §10.1 asks for *dynamic token allocation*: spend few tokens on a plain image and
# many on a detailed one, or few when the LLM's context is nearly full. Most tokenizers offer a
# handful of M values, fixed by their grid (8×8, 16×16, 32×32); the any-M tokenizer offers every M
# from 1 to 64 from one model.
#
# **What you will learn**
#
# - every tokenizer in the registry on one plot: reconstruction quality against the token count M,
#   and against the bits it costs;
# - where the any-M curve sits against the fixed-grid tokenizers at the same M.
#
# Caveat: a tokenizer's M is tied to its working size (64, 128 or 256 px), so two points at the
# same M may describe images of different sizes; the bits-per-pixel plot puts them on one scale.

# %% [markdown]
# ## Tóm tắt
#
# Mục 10.1 đặt ra bài toán cấp phát token động: ảnh đơn giản dùng ít token, ảnh nhiều chi tiết dùng
# nhiều, hoặc dùng ít khi ngữ cảnh sắp đầy. Notebook vẽ mọi bộ token hoá có trong dự án lên cùng một
# đồ thị: chất lượng tái tạo theo số token $M$ và theo số bit trên điểm ảnh. Anh chị sẽ thấy các bộ
# token hoá lưới cố định chỉ cho vài điểm, còn bộ token hoá M tuỳ ý cho cả một đường cong từ 1 đến 64
# token, và kiểm tra rằng thêm token không bao giờ làm ảnh xấu đi.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | cấp phát token động | dynamic token allocation | — |
# | bộ token hoá M tuỳ ý | any-M tokenizer | — |
# | lưới token | token grid | $h\times w$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import torch
from IPython.display import Markdown, display

from museumtok import registry
from museumtok.evaluate import evaluate_tokenizer
from museumtok.metrics import psnr
from museumtok.paths import fast_mode
from museumtok.viz import lines_figure

FAST = fast_mode()
torch.set_num_threads(1)
SET = "kodak"
LIMIT = 3 if FAST else None


# %% [markdown]
# ## 1. The metric, checked
#
# PSNR = 10·log₁₀(1 / MSE) for images in [0, 1]; the package's value on a toy pair.

# %%
a, b = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1)
assert abs(float(psnr(a, b)) - 10 * math.log10(1 / 0.01)) < 1e-4


# %% [markdown]
# ## 2. Every tokenizer, every M it offers

# %%
def sample_M(entry):
    """All M of a menu; for a continuous knob, a spread of values and the maximum."""
    s = entry.supported_M
    if not entry.m_is_range:
        return list(s)
    grid = (1, 4, 16, 64) if FAST else (1, 2, 4, 8, 16, 32, 48, 64, 128, 256)
    return sorted({m for m in grid if s[0] <= m <= s[-1]} | {s[-1]})


rows = []
for e in registry.entries("tokenizer"):
    if not e.available or (FAST and e.name not in ("anym-k1000", "lloyd-patch-k256", "multiscale-k1000")):
        continue
    tok = registry.load(e.name)
    for M in sample_M(e):
        if FAST and tok.working_size(M) > 128:
            continue
        r = evaluate_tokenizer(tok, SET, M, limit=LIMIT)
        rows.append({"tokenizer": e.name, "M": M, "size": r["size"], "psnr": r["psnr"], "bpp": r["bpp"], "bits": r["bits"]})
        assert abs(r["bits"] - M * math.log2(tok.K)) < 1e-6

by = {}
for r in rows:
    by.setdefault(r["tokenizer"], []).append(r)
display(Markdown("| tokenizer | M | working px | PSNR (dB) | bpp |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {r['tokenizer']} | {r['M']} | {r['size']} | {r['psnr']:.2f} | {r['bpp']:.3f} |" for r in rows)))

# %%
lines_figure({n: ([r["M"] for r in v], [r["psnr"] for r in v]) for n, v in by.items()},
             "M (tokens per image)", f"PSNR on {SET} (dB)", "Quality against the token count", log_x=True)

# %%
lines_figure({n: ([r["bpp"] for r in v], [r["psnr"] for r in v]) for n, v in by.items()},
             "bits per pixel (raw, M·log2 K / S²)", f"PSNR on {SET} (dB)", "Quality against the rate", log_x=True)

# %% [markdown]
# ## 3. Does quality grow with M?
#
# For the any-M tokenizer, each extra token must not hurt (nested dropout orders them coarse to fine).

# %%
if "anym-k1000" in by:
    ps = [r["psnr"] for r in by["anym-k1000"]]
    assert ps[-1] > ps[0], ps
    display(Markdown(f"anym-k1000: {ps[0]:.2f} dB with {by['anym-k1000'][0]['M']} token(s), "
                     f"{ps[-1]:.2f} dB with {by['anym-k1000'][-1]['M']}"))

# %% [markdown]
# **Take-away.** A fixed grid gives a few points; the any-M tokenizer gives a curve, so the token
# budget can follow the image and the context instead of the architecture.
