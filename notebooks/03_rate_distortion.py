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
# # 3 · Rate and distortion (§3.1–3.4 of the review)
#
# Every tokenizer and every codec in this project answers one question: **how many bits (rate, R)
# for how much damage (distortion, D)?** This notebook builds the vocabulary.
#
# **What you will learn**
#
# 1. *Entropy* — the fewest bits per symbol an ideal coder needs — and *perplexity*, its
#    exponential, the "effective number of codes" a tokenizer uses (§3.3, §4.3);
# 2. Shannon's *rate–distortion function* R(D) in closed form for a Gaussian source, and how far a
#    real quantizer sits above it (§3.1);
# 3. the *Lagrangian* D + λR that trades one for the other (§3.2) — with a slider for λ;
# 4. the distortion measures PSNR, SSIM, MS-SSIM and LPIPS on one artwork (§3.4);
# 5. a real rate–distortion curve: JPEG and WebP on the Kodak images, with bits counted from the
#    files they actually write.

# %% [markdown]
# ## Tóm tắt
#
# Chương 3 đặt nền toán học cho cả dự án: mọi bộ token hoá và mọi codec đều đánh đổi tốc độ bit $R$
# (tốn bao nhiêu bit) lấy độ méo $D$ (ảnh hỏng bao nhiêu). Notebook tính entropy và độ bối rối của một
# chuỗi mã, vẽ giới hạn Shannon $R(D)$ của nguồn Gauss bên cạnh một bộ lượng tử hoá vô hướng thật, và
# dùng hàm Lagrange $J = D + \lambda R$ với thanh trượt $\lambda$ để chọn điểm vận hành. Anh chị sẽ so
# PSNR, SSIM, MS-SSIM và LPIPS trên ba kiểu làm hỏng một bức tranh, vẽ đường cong tốc độ–độ méo của
# JPEG và WebP trên bộ ảnh Kodak, và thấy mã hoá entropy biến số bit lý thuyết thành số byte thật trên
# đĩa. Cuối notebook là một ví dụ nhỏ về mã hoá bits-back.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | tốc độ bit | rate (bit rate) | $R$ |
# | độ méo | distortion | $D$ |
# | thước đo độ méo | distortion measure | $d(x, \hat{x})$ |
# | entropy | entropy | $H$ |
# | độ bối rối | perplexity | $2^{H}$ |
# | tần suất mã thực nghiệm | empirical code frequency | $\hat{p}_k$ |
# | hàm tốc độ–độ méo | rate–distortion function | $R(D)$ |
# | nguồn Gauss | Gaussian source | $X \sim \mathcal{N}(0, \sigma^2)$ |
# | sai số bình phương trung bình | mean squared error (MSE) | — |
# | lượng tử hoá vô hướng đều | uniform scalar quantizer | $\hat{x} = \Delta\cdot\mathrm{round}(x/\Delta)$ |
# | hàm Lagrange | Lagrangian (rate–distortion cost) | $J = D + \lambda R$ |
# | hệ số Lagrange | Lagrange multiplier (trade-off weight) | $\lambda$ |
# | điểm vận hành | operating point | — |
# | đường cong tốc độ–độ méo | rate–distortion (RD) curve | — |
# | bit trên điểm ảnh | bits per pixel (bpp) | bpp |
# | bit thô | raw bits | $M \log_2 K$ |
# | mã hoá entropy | entropy coding | — |
# | bộ mã hoá dải | range coder | — |
# | tỉ số tín hiệu đỉnh trên nhiễu | peak signal-to-noise ratio (PSNR) | $10 \log_{10}(\mathrm{MAX}^2 / \mathrm{MSE})$ |
# | chỉ số tương đồng cấu trúc | structural similarity (SSIM) | — |
# | SSIM đa tỉ lệ | multi-scale SSIM (MS-SSIM) | — |
# | độ tương đồng cảm nhận học được | learned perceptual image patch similarity (LPIPS) | — |
# | mã hoá bits-back | bits-back coding | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import torch
from IPython.display import Markdown, display
from ipywidgets import FloatLogSlider, interact

from museumtok.codecs.pillow import PillowCodec
from museumtok.data.catalog import load_catalog
from museumtok.data.images import load_image, pil_to_tensor, working_image
from museumtok.eval.metrics import codec_rd_points, image_metrics, mean_rd_curve
from museumtok.metrics import code_counts, entropy_bits, lpips_available, perplexity, psnr, ssim
from museumtok.metrics.rate import HIGH_RATE_GAP_BITS, gaussian_distortion, gaussian_rate, lagrangian_best
from museumtok.paths import fast_mode
from museumtok.quantize.scalar import scalar_rd_curve, uniform_quantize
from museumtok.viz import lines_figure

FAST = fast_mode()
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)

# %% [markdown]
# ## 1. Entropy and perplexity
#
# A source that emits symbol k with probability p_k needs on average at least
# H(p) = −Σ p_k log2 p_k bits per symbol. Perplexity is 2^H (in bits) = e^H (in nats): the number
# of equally likely symbols that would have the same entropy. For a tokenizer with a K-code
# codebook, perplexity K means every code is used equally; perplexity 1 means every token is the
# same code ("codebook collapse").

# %%
K = 16
uniform = torch.arange(K).repeat(100)              # every code equally often
collapsed = torch.zeros(1600, dtype=torch.long)    # one code only
skewed = torch.multinomial(torch.tensor([0.5] + [0.5 / (K - 1)] * (K - 1)), 1600, replacement=True, generator=g)
for name, idx in [("uniform", uniform), ("collapsed", collapsed), ("skewed", skewed)]:
    print(f"{name:9s}: H = {entropy_bits(code_counts(idx, K)):.3f} bits, perplexity = {perplexity(idx, K):.2f}")

assert abs(perplexity(uniform, K) - K) < 1e-9 and perplexity(collapsed, K) == 1.0
p = code_counts(skewed, K).double() / len(skewed)
p = p[p > 0]
assert abs(perplexity(skewed, K) - math.exp(-(p * p.log()).sum())) < 1e-9   # exp(H in nats) = 2^(H in bits)

# %% [markdown]
# **A slip in the review.** §3.3 prints perplexity as exp(−Σ p̂_k log p̂_k) — correct. §4.3 prints
# exp((1/N)Σ_i log K − H(k_i)). Read literally, for a perfectly uniform codebook H = log K and the
# expression gives exp(0) = 1, the value that should mean *collapse*. The formula to use is §3.3's
# (recorded in `docs/errata.md`).

# %%
H_nats = math.log(K)                               # uniform use: H = log K
garbled = math.exp(sum(math.log(K) for _ in range(K)) / K - H_nats)
assert garbled == 1.0 and perplexity(uniform, K) == K
print(f"uniform use of K={K} codes: §4.3's formula gives {garbled}, the right one gives {perplexity(uniform, K):.0f}")

# %% [markdown]
# ## 2. Rate–distortion of a Gaussian, and a real quantizer against it
#
# For samples X ~ N(0, σ²) and mean squared error, Shannon's bound has a closed form:
# **R(D) = ½ log2(σ²/D)** bits per sample for D ≤ σ² (zero above). Equivalently D(R) = σ²·2^(−2R):
# each extra bit divides the error by 4, i.e. +6.02 dB.
#
# A *uniform scalar quantizer* with step Δ (x̂ = Δ·round(x/Δ)), followed by an ideal entropy coder,
# spends H(round(x/Δ)) bits per sample. At high rate its error is Δ²/12 and it sits a constant
# ½·log2(πe/6) ≈ 0.254 bit above R(D) (Gish & Pierce 1968) — the price of quantizing one sample at a
# time instead of long blocks. We measure both on real samples.

# %%
n = 50_000 if FAST else 1_000_000
x = torch.randn(n, generator=g, dtype=torch.float64)
steps = torch.logspace(math.log10(0.05), math.log10(3.0), 14).tolist()
points = scalar_rd_curve(x, steps)
D_grid = torch.logspace(-3.5, 0, 60).tolist()
lines_figure({
    "Shannon bound R(D) = ½ log2(σ²/D)": (D_grid, [gaussian_rate(D) for D in D_grid]),
    "uniform scalar quantizer + ideal entropy coder": ([p.distortion for p in points], [p.rate for p in points],
                                                        [f"Δ = {p.step:.3f}" for p in points]),
}, "distortion D (MSE)", "rate R (bits / sample)", title="Gaussian source, σ² = 1", log_x=True)

# %% [markdown]
# Checks: every real point lies above the bound; at the finest steps the error is Δ²/12 and the gap
# is 0.254 bit; D(R) inverts R(D).

# %%
assert all(p.rate >= gaussian_rate(p.distortion) - 1e-9 for p in points)
fine = points[0]                                           # Δ = 0.05: high-rate regime
assert abs(fine.distortion / (fine.step ** 2 / 12) - 1) < 0.02
gap = fine.rate - gaussian_rate(fine.distortion)
assert abs(gap - HIGH_RATE_GAP_BITS) < 0.02, gap
assert abs(gaussian_rate(gaussian_distortion(2.5)) - 2.5) < 1e-12
print(f"gap at Δ = {fine.step:.3f}: {gap:.4f} bit (theory {HIGH_RATE_GAP_BITS:.4f}); "
      f"in dB: {10 * math.log10(math.pi * math.e / 6):.2f}")

# %% [markdown]
# ## 3. The Lagrangian: choosing an operating point with λ
#
# Neural codecs are trained on one number that mixes both (§3.2). The review writes
# 𝓛 = E[−log p(z)] + λ·E[d(x, x̂)] — λ weighs the *distortion*, the convention of Ballé et al. and of
# CompressAI (`--lambda`). Here we use the equivalent J = D + λ·R (λ on the rate); one is the other
# with λ → 1/λ. For each λ the best point on the curve is the one where a line of slope −1/λ touches
# it: a small λ buys quality, a large λ buys bits.

# %%
R = [p.rate for p in points]
D = [p.distortion for p in points]


@interact(lmbda=FloatLogSlider(value=0.05, base=10, min=-3, max=0))
def pick(lmbda):
    i = lagrangian_best(R, D, lmbda)
    J = [d + lmbda * r for r, d in zip(R, D)]
    assert J[i] == min(J)
    print(f"λ = {lmbda:.4f}: step Δ = {points[i].step:.3f}, R = {R[i]:.2f} bits, D = {D[i]:.4f}, J = {J[i]:.4f}")


for lam in (1e-3, 1e-2, 1e-1, 1.0):   # larger λ never picks a higher rate
    pick(lam)
assert [R[lagrangian_best(R, D, lam)] for lam in (1e-3, 1e-2, 1e-1, 1.0)] == sorted(
    [R[lagrangian_best(R, D, lam)] for lam in (1e-3, 1e-2, 1e-1, 1.0)], reverse=True)

# %%
pick(0.5)      # the callback once more, with other values

# %% [markdown]
# ## 4. Distortion measures on an artwork (§3.4)
#
# PSNR = 10·log10(MAX²/MSE) counts pixel errors; SSIM compares local means, contrasts and
# structure; MS-SSIM does so at several scales; LPIPS compares deep features (lower is better).
# Three damages of one artwork, with roughly similar PSNR, are not equally visible: compare the numbers
# with what you see.

# %%
entry = load_catalog(split="test", collection="artworks")[0]
art = working_image(load_image(entry.find()).image, 256).x
noisy = (art + 0.06 * torch.randn(art.shape, generator=g)).clamp(0, 1)
blurred = torch.nn.functional.avg_pool2d(art[None], 5, 1, 2, count_include_pad=False)[0]
jpeg = PillowCodec("JPEG")
jpg = jpeg.decompress(jpeg.compress(art, quality=8))
rows = []
for name, y in [("gaussian noise", noisy), ("blur 5×5", blurred), ("JPEG quality 8", jpg)]:
    m = image_metrics(art[None], y[None])
    rows.append(f"| {name} | {float(m['psnr']):.2f} | {float(m['ssim']):.3f} | {float(m['ms_ssim']):.3f} | "
                f"{'%.3f' % float(m['lpips']) if m['lpips'] is not None else 'n/a'} |")
display(Markdown(f"**{entry.title}** ({entry.artist}), 256×256\n\n| damage | PSNR dB | SSIM | MS-SSIM | LPIPS |\n"
                 "|---|---|---|---|---|\n" + "\n".join(rows)))
ok, why = lpips_available()
print("LPIPS:", "available" if ok else f"n/a — {why}")

# PSNR by its definition, against the package (images rounded to 8 bits as the package does)
y8 = (noisy * 255).round() / 255
assert abs(10 * math.log10(1 / float((art - y8).pow(2).mean())) - float(psnr(art[None], y8[None]))) < 1e-4
assert float(ssim(art[None], art[None])) > 0.9999

# %%
from skimage.metrics import structural_similarity  # a reference implementation, for the check below

ref = structural_similarity(art.permute(1, 2, 0).numpy(), y8.permute(1, 2, 0).numpy(), channel_axis=2,
                            data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
assert abs(ref - float(ssim(art[None], y8[None]))) < 2e-3, (ref, float(ssim(art[None], y8[None])))
print(f"SSIM: museumtok {float(ssim(art[None], y8[None])):.4f}, scikit-image {ref:.4f}")

# %% [markdown]
# ## 5. A real RD curve: JPEG and WebP on Kodak
#
# The Kodak set (24 photographs, 768×512) is the field's standard benchmark. Each point is one
# quality setting; bits are 8 × the file's length, headers included, divided by the pixels (bpp).
# Fast mode uses 3 images and 6 qualities, workshop mode 8 images and 9 qualities (about a minute);
# `.venv/bin/museumtok eval rd --set kodak` measures all 24 (README, "Learned codecs on Kodak").

# %%
kodak = load_catalog(collection="kodak")[: 3 if FAST else 8]
xs = [pil_to_tensor(load_image(e.find()).image) for e in kodak]
qualities = [5, 15, 30, 50, 75, 90] if FAST else [2, 5, 10, 20, 30, 50, 75, 90, 95]
curves = {}
for codec in (PillowCodec("JPEG"), PillowCodec("WEBP")):
    pts = [dict(p, image=i) for i, xi in enumerate(xs) for p in codec_rd_points(codec, xi[None], qualities)]
    curves[codec.name] = mean_rd_curve(pts)
lines_figure({name: ([p["bpp"] for p in c], [p["psnr"] for p in c], [f"quality {p['quality']}" for p in c])
              for name, c in curves.items()},
             "bits per pixel", "PSNR (dB)", title=f"Kodak, {len(xs)} images, mean over images")

# %% [markdown]
# Checks: the bits are the real file length, and a higher quality setting costs more bits and gives
# a higher PSNR on average.

# %%
enc = jpeg.compress(xs[0], quality=50)
assert enc.bits == 8 * len(enc.data) and abs(enc.bpp - enc.bits / (xs[0].shape[1] * xs[0].shape[2])) < 1e-12
for name, c in curves.items():
    bpps, psnrs = [p["bpp"] for p in c], [p["psnr"] for p in c]
    assert bpps == sorted(bpps) and psnrs == sorted(psnrs), name
display(Markdown("| codec | quality | bpp | PSNR dB | MS-SSIM |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {n} | {p['quality']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} |" for n, c in curves.items() for p in c)))

# %% [markdown]
# ## 6. From bits in theory to bytes on disk: entropy coding (§3.3)
#
# Entropy is a promise; an *entropy coder* keeps it. A range coder (here `constriction`, through
# `museumtok.entropy`) writes a sequence of symbols under a probability table in about
# −Σ log2 p(symbol) bits, plus a few bytes of overhead. We code the scalar quantizer's indices from
# section 2 with a table fitted to them, decode the bytes back, and compare the three numbers:
# the empirical entropy, the table's estimate and the real file length.

# %%
import numpy as np

from museumtok.entropy.unigram import UnigramPrior

_, q = uniform_quantize(x[:20_000], 0.5)
symbols = (q - q.min()).numpy()                       # shift to 0 … K−1
K_sym = int(symbols.max()) + 1
prior = UnigramPrior.fit(symbols, K_sym, alpha=0.5)
data = prior.encode(symbols)
real_bits = 8 * len(data)
estimated_bits = prior.bits(symbols)
H = entropy_bits(code_counts(torch.from_numpy(symbols), K_sym)) * len(symbols)
assert np.array_equal(prior.decode(data, len(symbols)), symbols)          # lossless
assert abs(real_bits - estimated_bits) <= 0.01 * estimated_bits + 64      # the coder keeps the table's promise
assert estimated_bits >= H - 1e-6                                          # no table beats the empirical entropy
display(Markdown(f"| {len(symbols)} indices, {K_sym} symbols | bits | bits / symbol |\n|---|---|---|\n"
                 f"| empirical entropy n·H(p̂) | {H:.0f} | {H / len(symbols):.4f} |\n"
                 f"| the integer table's estimate −Σ log2 p | {estimated_bits:.0f} | {estimated_bits / len(symbols):.4f} |\n"
                 f"| the real range-coded file | {real_bits} | {real_bits / len(symbols):.4f} |"))

# %% [markdown]
# The same applies to image tokens: a tokenizer sends M indices of log2 K bits each (*raw bits*), but
# its codes are not equally frequent, so a prior fitted on the training artworks codes them in fewer
# bits. Each tokenizer's checkpoint carries that prior (`prior.json`: its code counts per M on the training
# split), so `t.bits_coded` is the coded size; the app shows both numbers for every tokenizer.

# %%
import museumtok

lloyd = museumtok.load("lloyd-patch-k1024")
M_demo = 64 if FAST else 256
t = lloyd.encode(art, M_demo)
tok_prior = lloyd.priors[M_demo]                       # read from data/checkpoints/lloyd-patch-k1024/prior.json
data = tok_prior.encode(t.indices.numpy())
coded = 8 * len(data)
assert np.array_equal(tok_prior.decode(data, t.M), t.indices.numpy().ravel())
assert abs(coded - t.bits_coded) <= 0.01 * t.bits_coded + 64         # bits_coded: the table's estimate
print(f"lloyd-patch-k1024 at M = {M_demo}: raw {t.bits_raw:.0f} bits (M·log2 K), bits_coded {t.bits_coded:.0f}, "
      f"real range-coded file {coded} bits ({coded / t.bits_raw:.0%} of raw)")

# %% [markdown]
# **Bits-back (Frey & Hinton 1997), on a toy.** A model with a latent z — p(x) = Σ_z p(z) p(x|z) — seems
# to force the sender to pay for z *and* for x given z: −log2 p(z) − log2 p(x|z) bits. Bits-back coding
# picks z by *decoding* it from bits the receiver already holds, with the posterior q(z|x); the receiver,
# knowing x and z, re-encodes and recovers those −log2 q(z|x) bits. The net cost is
# −log2 p(z) − log2 p(x|z) + log2 q(z|x), whose average is the negative ELBO; when q is the true
# posterior it equals −log2 p(x) exactly, the cost of coding x with the mixture itself.

# %%
p_z = np.array([0.7, 0.3])                                  # two latent "styles"
p_x_given_z = np.array([[0.6, 0.3, 0.05, 0.05],             # four symbols per style
                        [0.05, 0.15, 0.4, 0.4]])
p_x = p_z @ p_x_given_z                                     # the mixture
for xs in range(4):
    post = p_z * p_x_given_z[:, xs] / p_x[xs]               # q(z|x) = p(z|x)
    naive = -np.log2(p_z) - np.log2(p_x_given_z[:, xs])     # pay for z and x | z
    net = naive + np.log2(post)                             # minus the bits given back
    assert np.allclose(net, -np.log2(p_x[xs]))              # every z: exactly −log2 p(x)
    print(f"x = {xs}: naive E_q[bits] {float(post @ naive):.3f}, with bits back {float(post @ net):.3f} "
          f"= −log2 p(x) = {-np.log2(p_x[xs]):.3f}")
