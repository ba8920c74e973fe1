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
# # 5.4 · The Perceiver Resampler: M learned questions put to the patches (§5.4)
#
# A vision encoder gives one feature vector per patch — 196 for a 224 px ViT, 729 for SigLIP at
# 384 px. Flamingo's **Perceiver Resampler** (Alayrac et al. 2022, arXiv:2204.14198) reads any
# number N of them and always returns M vectors: M learned *latents* ask, through cross-attention,
# "which patches matter to me?". Idefics2 (Laurençon et al. 2024, arXiv:2405.02246) pools SigLIP's
# patches to 64 tokens the same way. (The review puts a resampler inside PaLM-E; PaLM-E has none —
# it feeds the encoder's embeddings to the LLM through a linear map. Both ideas are here: the
# resampler, and `soft_tokens`, its output projected to an LLM's width.)
#
# **What you will learn**
#
# - the attention formula, computed by hand and checked against the package;
# - why the resampler does not care about the order of the patches (and how an encoder gives it position);
# - what each latent looks at in a trained any-M tokenizer (`anym-k1000`), one map per token;
# - how few tokens an artwork survives: the first M tokens decode the whole image, M from 1 to 64.

# %% [markdown]
# ## Tóm tắt
#
# Mục 5.4 nói về bộ lấy mẫu lại Perceiver (Perceiver Resampler) của Flamingo: $M$ latent học được đặt
# câu hỏi cho các mảnh ảnh qua chú ý chéo, nên dù có bao nhiêu mảnh thì đầu ra vẫn luôn là $M$ vectơ.
# (Bài tổng quan gán khối này cho PaLM-E, nhưng PaLM-E không dùng nó.) Notebook tính tay một bước chú
# ý và đối chiếu với thư viện, kiểm tra rằng xáo trộn thứ tự các mảnh không làm đổi kết quả, và cho
# thấy token mềm được chiếu sang chiều nhúng của LLM. Anh chị sẽ xem mỗi token của bộ token hoá
# `anym-k1000` nhìn vào đâu trên ảnh, và kéo thanh trượt $M$ từ 1 đến 64 để thấy bức tranh còn lại gì
# khi chỉ giữ vài token đầu.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | bộ lấy mẫu lại Perceiver | Perceiver Resampler | — |
# | chú ý chéo | cross-attention | — |
# | latent học được | learned latents (queries) | $x \in \mathbb{R}^{M \times d}$ |
# | đặc trưng mảnh | patch features | $x_f \in \mathbb{R}^{N \times d}$ |
# | truy vấn, khoá, giá trị | query, key, value | $Q$, $K$, $V$ |
# | chiều đầu chú ý | head dimension | $d_h$ |
# | bộ mã hoá thị giác | vision encoder | — |
# | bất biến hoán vị | permutation invariance | — |
# | nhúng vị trí | positional embedding | — |
# | token mềm | soft tokens | — |
# | câu đa phương thức | multimodal sentences | — |
# | bộ token hoá M tuỳ ý | any-M tokenizer | — |
# | dropout lồng nhau | nested dropout | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import torch
from einops import rearrange
from IPython.display import Markdown, display
from ipywidgets import IntSlider, interact

import museumtok
from museumtok import registry
from museumtok.data.catalog import load_catalog
from museumtok.data.images import load_image, tensor_to_pil, working_image
from museumtok.eval.metrics import image_metrics
from museumtok.models.resampler import PerceiverResampler
from museumtok.paths import fast_mode
from museumtok.viz import attention_mosaic, attention_overlay, lines_figure

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. One attention step, by hand
#
# Latents x (M, d) and patch features x_f (N, d). Flamingo's trick: the keys and values are the
# patches **and** the latents, so one attention does the cross- and the self-attention at once:
#
# $$A = \mathrm{softmax}\!\Big(\frac{(x W_q)\,([x_f; x] W_k)^\top}{\sqrt{d_h}}\Big) \in \mathbb{R}^{M \times (N+M)},
# \qquad x \leftarrow x + A\,[x_f; x] W_v W_o .$$

# %%
res = PerceiverResampler(dim=32, num_latents=6, depth=1, heads=1).eval()
x_f = torch.randn(1, 20, 32)                                   # N = 20 patch features
out = res(x_f, return_attention=True)
attn = res.layers[0][0]                                         # the layer's attention block
x = res.latents[None]                                           # (1, M, d)
xf_n, x_n = attn.norm_media(x_f), attn.norm_latents(x)
q = attn.to_q(x_n)                                              # (1, M, d)
k, v = attn.to_kv(torch.cat([xf_n, x_n], 1)).chunk(2, -1)       # (1, N+M, d) each
A = (q @ k.transpose(1, 2) / math.sqrt(32)).softmax(-1)         # (1, M, N+M)
assert torch.allclose(A, out.attentions[0][:, 0], atol=1e-6)    # the package's map, head 0
x1 = x + attn.to_out(A @ v)
x1 = x1 + res.layers[0][1](x1)
assert torch.allclose(res.norm(x1), out.latents, atol=1e-5)
print("latents", tuple(out.latents.shape), "· attention", tuple(out.attentions[0].shape), "(B, heads, M, N+M)")

# %% [markdown]
# ## 2. A set, not a sequence
#
# Nothing in the formula knows where a patch came from: shuffle the patches and every latent gets
# the same answer. An encoder that wants the latents to know *where* must add positions to the
# features first (the any-M tokenizer adds a learned embedding per patch).

# %%
perm = torch.randperm(20)
assert torch.allclose(res(x_f[:, perm]).latents, out.latents, atol=1e-5)
for n in (1, 20, 729):
    print(f"N = {n:3d} patches in -> {tuple(res(torch.randn(1, n, 32)).latents.shape)} out")

# %% [markdown]
# ## 3. Soft tokens for an LLM
#
# For an LLM, the M outputs are projected to its embedding width and spliced between text
# embeddings (PaLM-E's "multi-modal sentences"). They are continuous: they cannot be written as
# token ids, only cached as floats — the discrete tokens below are a different use of the same block.

# %%
soft = res.soft_tokens(x_f, llm_width=2048)
assert soft.shape == (1, 6, 2048)
print(f"{soft.shape[1]} soft tokens of width {soft.shape[2]} = {soft.numel() * 2 / 1024:.0f} KiB in bf16 per image")

# %% [markdown]
# ## 4. What each token looks at (trained any-M tokenizer)
#
# `anym-k1000`: conv encoder → 64 patch features of a 64 px image → resampler with 64 latents →
# FSQ (K = 1000 codes per token) → decoder that reads the first M tokens. Below: each latent's
# attention over the 8×8 patches (last encoder layer, heads averaged), bright where it looks.
# Nested dropout trained the tokens in order, so token 0 must describe the whole image on its own.

# %%
tok = museumtok.load("anym-k1000")
entry = load_catalog(split="test", collection="artworks")[0]
wi = working_image(load_image(entry.find()).image, tok.working_size(1))
maps = tok.attention_maps(wi.x[None])[0]                        # (64, 8, 8)
assert torch.allclose(maps.sum((-1, -2)), torch.ones(len(maps)), atol=1e-4)
display(Markdown(f"**{entry.title}** — {entry.artist}, 64 px working crop"))
attention_mosaic(wi.x, maps[: 16 if FAST else 64], scale=3)


# %% [markdown]
# ### A slider: one token's attention, and the image from the first M tokens

# %%
def show(token=0, M=16):
    idx = tok.encode_tensor(wi.x[None], M)
    x_hat = tok.decode_indices(idx, M)[0]
    p = float(image_metrics(wi.x[None], x_hat[None], with_lpips=False)["psnr"])
    display(Markdown(f"token {token} attention · reconstruction from the first **M = {M}** tokens: "
                     f"PSNR {p:.2f} dB, {M * math.log2(tok.K):.0f} bits"))
    display(attention_overlay(wi.x, maps[token]).resize((192, 192)), tensor_to_pil(x_hat).resize((192, 192)))


interact(show, token=IntSlider(0, 0, 63), M=IntSlider(16, 1, 64))

# %%
show(token=3, M=8)      # the callback once more, with other values

# %% [markdown]
# ## 5. Quality against M
#
# The model card's held-out numbers (artworks-test and Kodak); here recomputed on a few images.

# %%
from museumtok.eval.metrics import evaluate_tokenizer  # noqa: E402

Ms = [1, 4, 16, 64] if FAST else [1, 2, 4, 8, 16, 32, 48, 64]
limit = 4 if FAST else None
curve = {s: [evaluate_tokenizer(tok, s, M, limit=limit)["psnr"] for M in Ms] for s in ("artworks-test", "kodak")}
assert curve["kodak"][-1] > curve["kodak"][0], "more tokens must help"
lines_figure({s: (Ms, v) for s, v in curve.items()}, "M (tokens)", "PSNR (dB)", "anym-k1000: first M tokens", log_x=True)

# %% [markdown]
# **Take-away.** The resampler decouples the number of tokens from the number of patches. With
# nested dropout, one model offers every M from 1 to 64: a museum can store 64 tokens per image
# and hand an LLM only the first 8 when the context is full.
