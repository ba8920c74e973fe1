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
# # 4.1 · Lloyd–Max: the codebook as cluster centres (§4.1 and Appendix B, Alg. 1)
#
# The oldest way to turn vectors into a few discrete symbols: keep K *codes* e_1 … e_K and send, for
# each vector z, the index of its nearest code. Lloyd's algorithm (Lloyd 1982, in Bell Labs notes
# since 1957; Linde, Buzo & Gray 1980 for vectors) finds good codes by repeating two steps:
#
# 1. **assignment** — each vector goes to its nearest code, k_i = argmin_k ‖z_i − e_k‖²;
# 2. **update** — each code moves to the mean of the vectors assigned to it.
#
# **What you will learn**
#
# - what the two steps do, on a 2-D picture of the cells (the *Voronoi* diagram);
# - why the mean squared error can never go up from one iteration to the next — checked, not claimed;
# - Appendix B's Alg. 1 — the exponential moving average (EMA) form used inside VQ-VAE — step by step;
# - a real image tokenizer built this way: codebooks of 8×8 RGB patches from the museum's artworks
#   (the `lloyd-patch` tokenizers in the app), and what K buys.

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.1 giới thiệu cách lâu đời nhất để biến vectơ thành ký hiệu rời rạc: giữ $K$ từ mã và chỉ gửi
# chỉ số của từ mã gần nhất. Notebook chạy thuật toán Lloyd (bước gán rồi bước cập nhật) trên 600 điểm
# hai chiều, vẽ các ô Voronoi và kiểm tra rằng sai số không bao giờ tăng qua các vòng lặp. Anh chị sẽ
# kéo thanh trượt để xem từng vòng lặp, kiểm tra một bước cập nhật EMA của Thuật toán 1 (Phụ lục B),
# rồi xem một bộ token hoá thật: bảng mã gồm các mảnh 8×8 điểm ảnh học từ tác phẩm của bảo tàng, và
# chất lượng tăng ra sao khi $K$ lớn hơn.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | lượng tử hoá vectơ | vector quantization (VQ) | — |
# | bảng mã | codebook | $\lbrace e_k \rbrace_{k=1}^{K}$ |
# | từ mã | code vector (codeword) | $e_k$ |
# | kích thước bảng mã | codebook size (number of codes) | $K$ |
# | chỉ số mã | code index | $k$ |
# | mã gần nhất | nearest code | $k_i = \arg\min_k \lVert z_{e,i} - e_k \rVert_2^2$ |
# | ô Voronoi | Voronoi cell | — |
# | thuật toán Lloyd | Lloyd's algorithm (Lloyd–Max, generalized Lloyd / LBG, k-means) | — |
# | bước gán | assignment step | — |
# | bước cập nhật | update step | — |
# | tâm cụm | cluster centre (centroid) | — |
# | cực tiểu cục bộ | local minimum | — |
# | khởi tạo k-means++ | k-means++ initialization | — |
# | k-means theo lô nhỏ | mini-batch k-means | — |
# | trung bình trượt luỹ thừa | exponential moving average (EMA) | — |
# | hệ số suy giảm | decay | $\gamma$ |
# | số phần tử của cụm | cluster size (count) | $N_k$, $n_k$ |
# | bộ token hoá ảnh | image tokenizer | — |
# | mảnh ảnh | patch | — |
# | ảnh làm việc | working image | $S$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import torch
from IPython.display import Markdown, display
from ipywidgets import IntSlider, interact

import museumtok
from museumtok.data.catalog import load_catalog
from museumtok.data.dataset import eval_batch
from museumtok.data.images import load_image, tensor_to_pil, working_image
from museumtok.eval.metrics import image_metrics
from museumtok.paths import fast_mode
from museumtok.quantize.lloyd import distortion, ema_step, fit_codebook, kmeans_pp_init, lloyd_step, minibatch_step, nearest
from museumtok.tokenizers.lloyd_patch import LloydPatchTokenizer
from museumtok.viz import lines_figure, patch_codebook_image, voronoi_figure

FAST = fast_mode()
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)

# %% [markdown]
# ## 1. A 2-D picture
#
# 600 points from five blobs, and K = 5 codes chosen by k-means++ (each new code is drawn with
# probability proportional to its squared distance from the codes so far; Arthur & Vassilvitskii
# 2007). The shaded regions are the cells: every point in a cell is sent as that cell's index.

# %%
centres = torch.tensor([[0.0, 0.0], [3.0, 0.5], [1.5, 2.8], [-2.0, 2.0], [-1.5, -2.5]])
z = torch.cat([c + 0.55 * torch.randn(120, 2, generator=g) for c in centres])   # (600, 2)
K = 5
e0 = kmeans_pp_init(z, K, torch.Generator().manual_seed(3))
voronoi_figure(z, e0, title=f"k-means++ start: distortion {distortion(z, e0):.3f}")

# %% [markdown]
# ## 2. One Lloyd iteration, by hand and by the package
#
# We write the two steps out in plain tensor code and check that `museumtok.quantize.lloyd_step`
# does exactly the same.

# %%
d2 = (z[:, None, :] - e0[None, :, :]).pow(2).sum(-1)           # (N, K) squared distances
k = d2.argmin(1)                                                # assignment step
e1_hand = torch.stack([z[k == j].mean(0) for j in range(K)])   # update step: cell means

e1, k_pkg, D_before = lloyd_step(z, e0)
assert torch.equal(k, k_pkg) and torch.allclose(e1, e1_hand, atol=1e-6)
assert abs(D_before - float(d2.min(1).values.mean())) < 1e-5
print(f"distortion before {D_before:.4f} → after {distortion(z, e1):.4f}")
voronoi_figure(z, e1, title="after one iteration")

# %% [markdown]
# ## 3. The distortion never increases
#
# Each step can only lower the mean squared error: the assignment picks the nearest code (so no
# vector's error grows), and the mean is the point that minimises the summed squared distance of a
# cell. Hence Lloyd converges — to a *local* minimum, which is why the start matters. Run 15
# iterations and check every step.

# %%
res = fit_codebook(z, K, iters=15, method="batch", init=e0, progress=False)
hist = res.history + [distortion(z, res.codebook)]
assert all(b <= a + 1e-7 for a, b in zip(hist, hist[1:])), hist
lines_figure({"batch Lloyd": (list(range(len(hist))), hist)}, "iteration", "mean squared error",
             title="Distortion per iteration (never increases)")

# %%
@interact(iteration=IntSlider(0, 0, 10))
def show_iteration(iteration):
    e = e0
    for _ in range(iteration):
        e, _, _ = lloyd_step(z, e)
    return voronoi_figure(z, e, title=f"iteration {iteration}: distortion {distortion(z, e):.4f}")


# %%
show_iteration(3)      # the callback once more, with other values

# %% [markdown]
# ## 4. Appendix B, Alg. 1: the EMA update
#
# Inside a neural network the vectors z arrive in mini-batches and keep changing, so the codes
# cannot be recomputed from all data. Appendix B's Alg. 1 moves each used code a step towards its
# batch mean:
#
# e_k ← γ·e_k + (1 − γ)·(Σ_{i: k_i = k} z_i) / (N_k + ε),  with γ ≈ 0.99.
#
# Note what "as printed" means: with ε > 0 the batch mean is slightly shrunk towards 0, and the
# update forgets how many vectors each code has seen. VQ-VAE's actual EMA (van den Oord et al.
# 2017, App. A.1) keeps running counts with Laplace smoothing; that form lives in
# `museumtok.quantize.vq` (chapter 4.2's notebook). Here we check one step of the printed form.

# %%
gamma, eps = 0.9, 1e-5
batch = z[torch.randperm(len(z), generator=g)[:64]]
kb = nearest(batch, e0)[0]
e_hand = e0.clone()
for j in range(K):
    Nj = int((kb == j).sum())
    if Nj > 0:
        e_hand[j] = gamma * e0[j] + (1 - gamma) * batch[kb == j].sum(0) / (Nj + eps)
e_pkg, _ = ema_step(batch, e0, gamma, eps)
assert torch.allclose(e_pkg, e_hand, atol=1e-6)
print("one EMA step (Alg. 1) matches the hand computation")

# %% [markdown]
# Three ways to fit the same codebook: batch Lloyd (all data per step), mini-batch k-means
# (Sculley 2010: each code is the running mean of everything it has seen) and Alg. 1's EMA. The
# mini-batch curves are noisy and, for EMA, slower: γ = 0.99 moves each code 1% per step.

# %%
steps = 60 if FAST else 300
runs = {}
for method in ("minibatch", "ema"):
    r = fit_codebook(z, K, iters=steps, method=method, batch_size=64, init=e0, progress=False, gamma=0.9)
    runs[method] = distortion(z, r.codebook)
runs["batch"] = distortion(z, res.codebook)
display(Markdown("| method | final distortion on all points |\n|---|---|\n" +
                 "\n".join(f"| {m} | {d:.4f} |" for m, d in runs.items())))

# the running-mean identity behind mini-batch k-means: one step from zero counts = the batch mean
e_mb, totals = minibatch_step(batch, e0, torch.zeros(K))
for j in kb.unique():
    assert torch.allclose(e_mb[j], batch[kb == j].mean(0), atol=1e-6)

# %% [markdown]
# ## 5. Patch codebooks on the artworks
#
# The `lloyd-patch` tokenizers cut a working image of S×S pixels into 8×8 patches (M = (S/8)²
# tokens: 64 px → 64, 128 px → 256, 256 px → 1024) and send each patch as the index of its nearest
# code among K codes of 192 numbers (8·8 pixels × RGB). We fit small codebooks here on a few
# training artworks; the bundled checkpoints used the whole training split
# (`museumtok train lloyd-patch`; see their model cards).

# %%
tok_shape = LloydPatchTokenizer(K=16, patch=8)
train_x, _ = eval_batch("artworks-train", 128, limit=4 if FAST else 40)            # (N, 3, 128, 128)
patches = tok_shape.patchify(train_x).reshape(-1, 192)                              # (N·256, 192)
entry = load_catalog(split="test", collection="artworks")[1]
test_x = working_image(load_image(entry.find()).image, 128).x[None]                 # (1, 3, 128, 128)
print(f"{len(patches)} training patches; test image: {entry.title} ({entry.artist})")


def patch_tokenizer(K: int, iters: int) -> LloydPatchTokenizer:
    tok = LloydPatchTokenizer(K=K, patch=8)
    tok.codebook.copy_(fit_codebook(patches, K, iters=iters, progress=False).codebook)
    return tok


Ks = [16, 64, 256] if FAST else [16, 64, 256, 1024]
iters = 8 if FAST else 25
fitted = {K: patch_tokenizer(K, iters) for K in Ks if K <= len(patches)}
scores = {K: float(image_metrics(test_x, t.decode_indices(t.encode_tensor(test_x)))["psnr"]) for K, t in fitted.items()}
display(Markdown("| K | bits per token | PSNR on the test artwork (dB) |\n|---|---|---|\n" +
                 "\n".join(f"| {K} | {K.bit_length() - 1} | {p:.2f} |" for K, p in scores.items())))
assert all(scores[a] <= scores[b] + 0.3 for a, b in zip(Ks, Ks[1:]) if a in scores and b in scores)

# %%
@interact(K=list(fitted))
def show_patch_codebook(K):
    tok = fitted[K]
    x_hat = tok.decode_indices(tok.encode_tensor(test_x))
    print(f"K = {K}: PSNR {scores[K]:.2f} dB; the codebook, one tile per code:")
    display(patch_codebook_image(tok.codebook, 8, columns=32))
    display(tensor_to_pil(torch.cat([test_x[0], x_hat[0].clamp(0, 1)], 2)).resize((512, 256)))


# %%
show_patch_codebook(list(fitted)[-1])      # the callback once more, with other values

# %% [markdown]
# ## 6. The bundled tokenizer, through the one contract
#
# The app's `lloyd-patch-k1024` is the same algorithm on all 80 training artworks. It follows the
# contract every tokenizer in museumtok follows: `encode(image, M)` → tokens with their patch boxes
# and bits, `decode(tokens)` → image.

# %%
tok = museumtok.load("lloyd-patch-k1024")
t = tok.encode(entry.find(), M=256)
x_hat = tok.decode(t)
m = image_metrics(t.working.x[None], x_hat[None])
print(f"{t.M} tokens on a {t.grid_shape} grid, {t.bits_raw:.0f} raw bits (= M·log2 K = 256·10), "
      f"PSNR {float(m['psnr']):.2f} dB")
assert t.bits_raw == 256 * 10 and tuple(x_hat.shape) == (3, 128, 128)
assert torch.equal(tok.encode_tensor(t.working.x[None], 256)[0], t.indices)
