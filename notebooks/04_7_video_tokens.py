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
# # 4.7 · Video tokens: space × time downsampling and the token rate
#
# **What you will learn**
#
# - how a spatio-temporal tokenizer (3-D convolutions, space f = 8, time t = 4 — the MAGVIT family,
#   e.g. MAGVIT-v2, Yu et al., ICLR 2024, arXiv:2310.05737) turns a clip into a (T/t, H/f, W/f) token grid;
# - the token rate: **tokens/s = fps / t · (H/f)·(W/f)**, and the review's §4.7 slip (erratum `s4-7-rate`:
#   its own parameters give 1,920 tokens/s at 30 fps, not 512);
# - a tiny tokenizer trained for a few seconds on synthetic moving squares, then applied to a
#   pan-and-zoom clip over an artwork — the measured token count equals the formula. (Untrained
#   quality: this notebook is about shapes and arithmetic.)

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.7 mở rộng sang video: thời gian chỉ là thêm một trục để giảm mẫu. Notebook tính tốc độ token
# của một bộ token hoá không gian–thời gian, token/giây $= \text{fps}/t \cdot (H/f) \cdot (W/f)$, và
# chỉ ra rằng với chính các tham số của bài tổng quan, video 30 fps cần 1920 token mỗi giây chứ không
# phải 512. Anh chị sẽ dùng máy tính tốc độ token với các thanh trượt, huấn luyện vài giây một bộ
# token hoá tí hon trên các ô vuông chuyển động, rồi áp nó lên một đoạn lia–phóng trên bức tranh và
# thấy số token đo được khớp đúng công thức.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | token video | video tokens | — |
# | bộ token hoá không gian–thời gian | spatio-temporal tokenizer | — |
# | tích chập 3-D | 3-D convolution | — |
# | hệ số giảm mẫu thời gian | temporal downsampling factor | $t$ |
# | số khung hình mỗi giây | frames per second (fps) | fps |
# | tốc độ token | token rate | tokens/s $= \frac{\text{fps}}{t}\cdot\frac{H}{f}\cdot\frac{W}{f}$ |
# | khung ẩn | latent frame | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import plotly.graph_objects as go
import torch
from ipywidgets import IntSlider

from museumtok.data.dataset import eval_batch
from museumtok.literature import load_errata
from museumtok.models.video import (VideoVQ, VideoVQConfig, fit_clips, moving_square_clip, pan_zoom_clip,
                                    tokens_per_second, video_token_grid)
from museumtok.paths import fast_mode
from museumtok.viz import image_row_figure, interact_or_call

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. The token-rate calculator

# %%
@interact_or_call(fps=IntSlider(30, 1, 60), side=IntSlider(128, 64, 512, step=64), f=[8, 16, 4], t=[4, 1, 2, 8])
def rate(fps=30, side=128, f=8, t=4):
    return (f"{side}×{side} px at {fps} fps, f={f}, t={t}: {side // f}×{side // f} tokens per latent frame, "
            f"{fps / t:g} latent frames/s → {tokens_per_second(fps, side, side, f=f, t=t):,.0f} tokens/s")


e = {e.id: e for e in load_errata()}["s4-7-rate"]
chk = e.check()
ours = tokens_per_second(30, grid=(16, 16), t=4)
print(f"review §4.7: 16×16 tokens per frame, 4× in time, 30 fps → it says {e.review_value} tokens/s; "
      f"the formula gives {ours:,.0f}")
assert ours == chk.value == 1920 and chk.refutes_review

# %%
rate(fps=24, side=256, f=16, t=2)      # the callback once more, with other values

# %% [markdown]
# ## 2. A tiny space-time tokenizer on moving squares

# %%
clips = torch.stack([moving_square_clip(8, 32, velocity=v, colour=c)
                     for v, c in (((2, 1), (1.0, 0.3, 0.1)), ((1, 3), (0.1, 0.8, 0.2)), ((3, 2), (0.2, 0.3, 1.0)))])
model = VideoVQ(VideoVQConfig(channels=(16, 32, 32, 32), codebook_size=64, dim=8))
losses = fit_clips(model, clips, steps=15 if FAST else 150, lr=3e-3)
k = model.encode_indices(clips)
print("clips", tuple(clips.shape), "→ tokens", tuple(k.shape), f"; recon MSE {losses[0]:.4f} → {losses[-1]:.4f}")
assert k.shape[1:] == video_token_grid(8, 32, 32, f=8, t=4)
x_hat = model.decode_indices(k)
image_row_figure([(f"frame {i}", clips[0, :, i]) for i in range(0, 8, 2)]
                 + [(f"x̂ frame {i}", x_hat[0, :, i]) for i in range(0, 8, 2)], height=180)

# %% [markdown]
# ## 3. A pan-and-zoom clip over an artwork: measured tokens against the formula

# %%
art, _ = eval_batch("artworks-test", 256, limit=1)
T, S, fps = 16, 64, 30
clip = pan_zoom_clip(art[0], T=T, S=S)                        # (3, 16, 64, 64)
kc = model.encode_indices(clip[None])
measured = kc.numel() / (T / fps)
print(f"{T} frames of {S}×{S} px at {fps} fps ({T / fps:.2f} s) → {kc.numel()} tokens "
      f"{tuple(kc.shape[1:])} = {measured:,.0f} tokens/s; formula {tokens_per_second(fps, S, S, f=8, t=4):,.0f}")
assert measured == tokens_per_second(fps, S, S, f=8, t=4)
image_row_figure([(f"frame {i}", clip[:, i]) for i in range(0, T, 5)], height=180)

# %% [markdown]
# **Takeaways.** Time is just another axis to downsample: with t = 4 a 30 fps clip becomes 7.5
# latent frames per second, each a spatial token grid, so even a small 128 px stream costs ~2k tokens
# every second — a live guided tour is far beyond what §4.7's 512 tokens/s suggests.
