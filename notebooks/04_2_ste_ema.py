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
# # 4.2 · Straight-through, EMA codebooks and dead codes (§4.2 and Appendix B of the review)
#
# **What you will learn**
#
# - why a nearest-code lookup stops gradients, and how the straight-through estimator (STE,
#   Appendix B, Alg. 2) lets the encoder learn anyway — with the gradients printed, and a tiny
#   autoencoder trained with and without it;
# - two ways to move the codes: the codebook loss ‖sg[z_e] − e_k‖² with SGD, and an exponential
#   moving average (EMA, Alg. 1) — and why one SGD step *is* an EMA step with a decay that depends on
#   how many vectors a code won;
# - what the review's Alg. 1 prints, what VQ-VAE actually does (running counts and Laplace
#   smoothing), and where the two agree;
# - how codes die (never the nearest code of anything, so never updated) and how restarting them
#   from current encoder outputs revives them — live, with a slider;
# - Alg. 3 (Gumbel-softmax) step by step;
# - two quantizers without a learned codebook, FSQ and LFQ, beyond the review.
#
# Every formula is recomputed by hand on small tensors and checked with an `assert` against
# `museumtok.quantize`, whose `VectorQuantizer` also agrees with `vector-quantize-pytorch` (see
# `tests/test_quantize.py`).

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.2 và Phụ lục B xử lý một trở ngại: bước chọn mã gần nhất chặn gradient, nên bộ mã hoá không
# học được. Notebook in gradient ra để thấy bộ ước lượng xuyên thẳng (STE) cho gradient đi qua, so hai
# cách cập nhật bảng mã (tổn thất bảng mã với SGD, và trung bình trượt luỹ thừa EMA), và chỉ ra chỗ
# Thuật toán 1 của bài tổng quan khác với VQ-VAE thật. Anh chị sẽ dùng thanh trượt để xem mã chết xuất
# hiện và được cứu bằng cách khởi động lại, chạy từng bước Gumbel-softmax (Thuật toán 3), và làm quen
# với hai bộ lượng tử hoá không cần bảng mã học: FSQ và LFQ.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | bộ ước lượng xuyên thẳng | straight-through estimator (STE) | $\partial z_q / \partial z_e \approx I$ |
# | dừng gradient | stop-gradient | $\mathrm{sg}[\cdot]$ |
# | biến ẩn liên tục | encoder output (continuous latent) | $z_e$ |
# | biến ẩn đã lượng tử hoá | quantized latent | $z_q$ |
# | bộ mã hoá | encoder | — |
# | bộ giải mã | decoder | — |
# | bộ tự mã hoá | autoencoder | — |
# | tổn thất bảng mã | codebook loss | $\lVert \mathrm{sg}[z_e] - e_k \rVert_2^2$ |
# | tổn thất cam kết | commitment loss | $\beta \lVert z_e - \mathrm{sg}[e_k] \rVert_2^2$ |
# | hệ số cam kết | commitment weight | $\beta$ |
# | hạ gradient ngẫu nhiên | stochastic gradient descent (SGD) | — |
# | tốc độ học | learning rate | $\eta$ |
# | tổng tích luỹ | running sum | $m_k$ |
# | làm trơn Laplace | Laplace smoothing | $\varepsilon$ |
# | mã chết | dead code | — |
# | sụp đổ bảng mã | codebook collapse | — |
# | khởi động lại mã chết | dead-code restart | $T$ |
# | phép nới lỏng Gumbel-softmax | Gumbel-softmax relaxation | $w = \mathrm{softmax}((\ell + g)/\tau)$ |
# | lượng tử hoá vô hướng hữu hạn | finite scalar quantization (FSQ) | $L_i$ |
# | lượng tử hoá không tra bảng | lookup-free quantization (LFQ) | $K = 2^{d}$ |
# | phạt entropy | entropy penalty | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
from functools import lru_cache

import plotly.graph_objects as go
import torch
from ipywidgets import Dropdown, FloatLogSlider, FloatSlider, IntSlider, interact
from plotly.subplots import make_subplots

from museumtok.paths import fast_mode
from museumtok.quantize import GumbelQuantizer, VectorQuantizer, ema_step, gumbel_softmax, laplace_smooth
from museumtok.quantize.toy import (
    as_grid, fit_codebook_stream, fit_toy_autoencoder, ring_clusters, used_codes,
)

torch.set_num_threads(1)
FAST = fast_mode()
STEPS = 120 if FAST else 400       # training steps of the toy runs
print(f"fast mode: {FAST}, {STEPS} steps per toy run")

# %% [markdown]
# ## 1. The straight-through estimator (Alg. 2)
#
# The quantizer picks k = argmin_k ‖z_e − e_k‖² and outputs z_q = e_k. As a function of z_e this is
# piecewise constant: its derivative is zero almost everywhere, and `argmin` has no gradient at
# all. If the decoder reads e_k directly, the reconstruction loss never reaches the encoder.
#
# The STE (van den Oord et al. 2017, after Bengio et al. 2013) pretends the quantizer is the
# identity on the way back, ∂z_q/∂z_e ≈ I. In code, z_q = sg[e_k] + (z_e − sg[z_e]): the forward
# value is exactly e_k, the backward pass sees z_e. Below, a loss L = Σ w ⊙ z_q with random weights
# w: without the STE the encoder's gradient does not exist, with it ∂L/∂z_e = ∂L/∂z_q = w.

# %%
torch.manual_seed(0)
vq = VectorQuantizer(dim=2, codebook_size=4)
z_e = torch.randn(1, 2, 1, 3, requires_grad=True)          # three latent vectors, (B, D, H, W)
w = torch.randn(1, 2, 1, 3)                                 # dL/dz_q

out = vq(z_e)
e_k = vq.indices_to_codes(out.indices)                      # the codes themselves, no STE
print("indices:", out.indices.flatten().tolist())
print("requires grad w.r.t. z_e without STE:", e_k.requires_grad and e_k.grad_fn is not None,
      "(the codes depend on z_e only through argmin)")

(w * out.z_q).sum().backward()
print("dL/dz_e with STE:\n", z_e.grad.squeeze())
assert torch.equal(out.z_q, e_k)                            # forward: exactly the code
assert torch.equal(z_e.grad, w)                             # backward: the identity (Alg. 2)

# %% [markdown]
# The codebook gets its own gradient from the codebook term of the loss,
# ∂/∂e_k ‖sg[z_e] − e_k‖² = 2 (e_k − z_e) (Alg. 2, last line: "∂L/∂e_k accumulates from
# (z_e − e_k)"), and the encoder a second one from the commitment term β‖z_e − sg[e_k]‖², with
# β on the *commitment* term as in the paper. (taming-transformers' `VectorQuantizer` historically
# put β on the codebook term; that is a bug, kept there only for old checkpoints.)

# %%
codes = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
vq = VectorQuantizer(dim=2, codebook_size=2, beta=0.25)
with torch.no_grad():
    vq.embedding.copy_(codes)
v = torch.tensor([[0.2, 0.1], [0.8, 1.3]])                  # two vectors, nearest codes 0 and 1
z_e = as_grid(v).requires_grad_(True)
out = vq(z_e)
out.loss.backward()
n = v.numel()                                               # the losses are means over N·D entries
by_hand = {"codebook": ((codes - v) ** 2).sum() / n, "commitment": ((v - codes) ** 2).sum() / n}
print({k: round(float(x), 5) for k, x in out.losses.items()}, "loss =", round(out.loss.item(), 5))
for k in by_hand:
    assert torch.isclose(out.losses[k], by_hand[k])
assert torch.isclose(out.loss, by_hand["codebook"] + 0.25 * by_hand["commitment"])
assert torch.allclose(vq.embedding.grad, 2 * (codes - v) / n)               # codebook: no β
assert torch.allclose(z_e.grad, as_grid(0.25 * 2 * (v - codes) / n))        # encoder: β · commitment

# %% [markdown]
# ### Does the encoder learn without it?
#
# A two-dimensional toy: points from 16 tight clusters on a circle, a linear encoder that starts by
# squashing them towards the origin, a 16-code quantizer initialised by k-means on the first batch,
# and a linear decoder. Trained with the STE, the encoder learns to spread its outputs so each
# cluster gets its own code. Without it (the decoder reads sg[z_q]), the reconstruction error cannot
# reach the encoder; only the commitment term moves it, towards codes it already has.

# %%
with_ste = fit_toy_autoencoder(ste=True, steps=STEPS)
without_ste = fit_toy_autoencoder(ste=False, steps=STEPS)
fig = go.Figure([go.Scatter(y=with_ste, name="with STE"), go.Scatter(y=without_ste, name="without STE (sg[z_q])")])
fig.update_layout(title="Reconstruction error of a toy VQ autoencoder", xaxis_title="step",
                  yaxis_title="‖x − x̂‖²", yaxis_type="log", height=380)
fig.show()
print(f"final error: with STE {with_ste[-1]:.3f}, without {without_ste[-1]:.3f}")
assert with_ste[-1] < without_ste[-1]

# %% [markdown]
# ## 2. Moving the codes: codebook loss or EMA (Alg. 1)
#
# **The loss route.** One SGD step of size η on the codebook loss (a mean over the N·D entries)
# moves each code towards the mean of the n_k vectors it won:
#
# e_k ← e_k − η · 2 n_k /(N D) · (e_k − z̄_k),  z̄_k = (1/n_k) Σ_{i: k_i = k} z_i,
#
# which is an exponential moving average of the cluster mean with a decay γ_k = 1 − 2 η n_k/(N D)
# that differs per code and per batch: codes that win a lot move fast, rarely used codes barely
# move, and a large η overshoots (γ_k < 0) and diverges.
#
# **The EMA route.** Appendix B, Alg. 1 of the review prints
#
# e_k ← γ e_k + (1 − γ) Σ_{i: k_i=k} z_i / (N_k + ε)   for every code with N_k > 0,
#
# one fixed γ for every code. We check both claims on a small example.

# %%
g = torch.Generator().manual_seed(3)
K, D, N = 3, 2, 6
codes = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
z = torch.tensor([[0.5, 0.2], [-0.3, 0.4], [2.5, 0.5], [3.4, -0.2], [2.9, 0.3], [0.2, 2.8]])

# Alg. 1, step by step
k = torch.cdist(z, codes).argmin(1)                          # assignment
n_k = torch.bincount(k, minlength=K).float()                 # N_k in the review's notation
sums = torch.zeros(K, D).index_add_(0, k, z)                 # Σ_{i: k_i=k} z_i
gamma, eps = 0.9, 1e-5
alg1 = codes.clone()
for j in range(K):
    if n_k[j] > 0:
        alg1[j] = gamma * codes[j] + (1 - gamma) * sums[j] / (n_k[j] + eps)
print("assignments", k.tolist(), "counts", n_k.tolist())
print("Alg. 1 codebook:\n", alg1)
assert torch.allclose(alg1, ema_step(z, codes, gamma=gamma, eps=eps)[0])   # museumtok.quantize.lloyd

# one SGD step on the codebook loss = an EMA of the cluster means with γ_k = 1 − 2 η n_k / (N D)
eta = 0.8
vq = VectorQuantizer(D, K)
with torch.no_grad():
    vq.embedding.copy_(codes)
vq(as_grid(z)).losses["codebook"].backward()
sgd = codes - eta * vq.embedding.grad
gamma_k = 1 - 2 * eta * n_k / (N * D)
means = sums / n_k[:, None]
print("γ_k of the SGD step:", gamma_k.tolist())
assert torch.allclose(sgd, gamma_k[:, None] * codes + (1 - gamma_k[:, None]) * means)

# %% [markdown]
# **What VQ-VAE does.** Alg. 1 as printed is not quite the EMA of the VQ-VAE paper (van den Oord
# et al. 2017, Appendix A.1; also Razavi et al. 2019). The paper keeps two running averages per
# code — the count N_k and the sum m_k — and divides them:
#
# N_k ← γ N_k + (1 − γ) n_k,  m_k ← γ m_k + (1 − γ) Σ_{i: k_i=k} z_i,  e_k = m_k / Ñ_k,
#
# and implementations (DeepMind's Sonnet `VectorQuantizerEMA`, vector-quantize-pytorch) add
# **Laplace smoothing** of the counts, Ñ_k = (N_k + ε)/(n + K ε) · n, n = Σ_k N_k, so that a code
# whose running count has decayed to zero does not divide by zero (the paper's equations divide by
# N_k itself). The difference matters: Alg. 1 gives a
# batch in which a code won one vector the same weight as one in which it won a thousand; the
# running counts weigh each batch by what the code actually saw. The two agree exactly when the
# running count equals this batch's count (and ε → 0). `VectorQuantizer(ema=True)` implements the
# paper's form with the smoothing (the review's ε becomes the Laplace ε); we check it and the agreement.

# %%
vq = VectorQuantizer(D, K, ema=True, decay=gamma, eps=eps)
with torch.no_grad():
    vq.embedding.copy_(codes)
    vq.embed_sum.copy_(codes)             # m_k starts at e_k with N_k = 1
out = vq(as_grid(z))

N_run = gamma * torch.ones(K) + (1 - gamma) * n_k
m_run = gamma * codes + (1 - gamma) * sums
n_tot = N_run.sum()
N_smooth = (N_run + eps) / (n_tot + K * eps) * n_tot
paper = m_run / N_smooth[:, None]
print("paper's EMA codebook:\n", paper)
assert torch.allclose(vq.cluster_size, N_run) and torch.allclose(vq.embed_sum, m_run)
assert torch.allclose(N_smooth, laplace_smooth(N_run, eps))
assert torch.allclose(vq.codebook, paper, atol=1e-6)

# agreement with Alg. 1 when the running counts equal this batch's counts
vq = VectorQuantizer(D, K, ema=True, decay=gamma, eps=1e-12)
with torch.no_grad():
    vq.embedding.copy_(codes)
    vq.cluster_size.copy_(n_k)
    vq.embed_sum.copy_(codes * n_k[:, None])
vq(as_grid(z))
assert torch.allclose(vq.codebook, ema_step(z, codes, gamma=gamma, eps=0.0)[0], atol=1e-5)
print("paper's EMA = Alg. 1 at steady counts ✓")

# %% [markdown]
# ### EMA against the loss, on a stream
#
# The same 16-cluster stream, 16 codes started from a common random initialisation, trained
# either by SGD on the codebook loss (learning rate η) or by the EMA (decay γ). Move the sliders:
# the EMA (a convex combination at every step) has no learning rate to tune and cannot diverge;
# SGD with a large η overshoots. Neither moves a code that never wins anything towards the data:
# SGD leaves it where it started, the EMA only lets it sink towards the origin once its decayed
# count falls below the Laplace ε. Those are the dead codes of the next section.

# %%
init = 2 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1))


def compare_updates(eta=5.0, gamma=0.9):
    loss_run = fit_codebook_stream(VectorQuantizer(2, 16), steps=STEPS, lr=eta, init=init)
    ema_run = fit_codebook_stream(VectorQuantizer(2, 16, ema=True, decay=gamma), steps=STEPS, init=init)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("distortion ‖z − e_k‖² per batch", "codes after training"))
    for name, run in ((f"SGD η={eta:g}", loss_run), (f"EMA γ={gamma:g}", ema_run)):
        fig.add_trace(go.Scatter(y=run.distortion, name=name), row=1, col=1)
        cb = run.codebooks[-1]
        fig.add_trace(go.Scatter(x=cb[:, 0], y=cb[:, 1], mode="markers", marker=dict(size=10), name=name + " codes",
                                 showlegend=False), row=1, col=2)
    data = ring_clusters(800, generator=torch.Generator().manual_seed(9))
    fig.add_trace(go.Scatter(x=data[:, 0], y=data[:, 1], mode="markers", marker=dict(size=3, color="lightgrey"),
                             name="data"), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=420, xaxis_title="step")
    fig.show()
    return loss_run, ema_run


interact(compare_updates, eta=FloatLogSlider(value=5.0, base=10, min=-1, max=1.7, step=0.1, description="SGD η"),
         gamma=FloatSlider(value=0.9, min=0.5, max=0.999, step=0.01, description="EMA γ"));

# %%
loss_run, ema_run = compare_updates(eta=2.0, gamma=0.95)      # the callback, with other values than the sliders'
assert min(ema_run.distortion) < ema_run.distortion[0] and min(loss_run.distortion) < loss_run.distortion[0]

# %% [markdown]
# ## 3. Dead codes, and restarting them
#
# A code that is never the nearest code of any vector gets no gradient (the codebook loss only
# touches winners) and no EMA update (its count stays zero): once dead, it stays dead. Here every
# code starts in a far corner, so a single code wins the whole batch and drags itself onto the data
# while the 15 others never move — the extreme form of **codebook collapse**, perplexity 1.
#
# **Restart** (Dhariwal et al. 2020, Jukebox; Zeghidour et al. 2021, SoundStream): a code unused
# for T consecutive training steps is moved onto a randomly chosen *current* encoder output, where
# it is bound to win something. `VectorQuantizer(restart_dead_after=T)`. Drag the step slider to
# watch it happen; grey codes are dead (won nothing in the batch), coloured ones alive.

# %%
far = torch.tensor([20.0, 20.0]) + 0.01 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
DEAD_STEPS = 40 if FAST else 80
data = ring_clusters(1024, generator=torch.Generator().manual_seed(5))


@lru_cache(maxsize=16)  # the step slider only redraws
def dead_code_runs(restart_after: int, ema: bool):
    runs = {}
    for T in (0, restart_after):
        q = VectorQuantizer(2, 16, ema=ema, decay=0.9, restart_dead_after=T)
        runs[T] = fit_codebook_stream(q, steps=DEAD_STEPS, lr=0.5, init=far)
    return runs


def show_dead_codes(step=DEAD_STEPS, restart_after=5, update="EMA"):
    runs = dead_code_runs(restart_after, ema=update == "EMA")
    titles = [f"no restart: usage {runs[0].usage[max(step - 1, 0)]:.2f}",
              f"restart after {restart_after} steps: usage {runs[restart_after].usage[max(step - 1, 0)]:.2f}"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=(*titles, "usage per batch"))
    for col, T in ((1, 0), (2, restart_after)):
        cb = runs[T].codebooks[step]
        alive = used_codes(data, cb)
        fig.add_trace(go.Scatter(x=data[:, 0], y=data[:, 1], mode="markers", marker=dict(size=3, color="lightgrey"),
                                 showlegend=False), row=1, col=col)
        fig.add_trace(go.Scatter(x=cb[alive, 0], y=cb[alive, 1], mode="markers", marker=dict(size=11, color="crimson"),
                                 name="alive", showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Scatter(x=cb[~alive, 0], y=cb[~alive, 1], mode="markers",
                                 marker=dict(size=11, color="grey", symbol="x"), name="dead", showlegend=col == 1),
                      row=1, col=col)
        fig.add_trace(go.Scatter(y=runs[T].usage, name=f"T={T}" if T else "no restart"), row=1, col=3)
    fig.add_vline(x=step, line_dash="dot", row=1, col=3)
    fig.update_layout(height=420, title=f"step {step} of {DEAD_STEPS}, {update} codebook")
    fig.show()
    return runs


interact(show_dead_codes, step=IntSlider(value=DEAD_STEPS, min=0, max=DEAD_STEPS, description="step"),
         restart_after=IntSlider(value=5, min=1, max=20, description="T"),
         update=Dropdown(options=["EMA", "loss"], value="EMA", description="update"));

# %%
show_dead_codes(step=DEAD_STEPS // 2, restart_after=8, update="loss")      # the callback, with other values
runs = show_dead_codes(step=DEAD_STEPS, restart_after=5, update="EMA")
final = {T: used_codes(data, r.codebooks[-1]).float().mean().item() for T, r in runs.items()}
print("held-out usage without / with restart:", final)
assert final[0] <= 2 / 16 and final[5] >= 0.75

# %% [markdown]
# ## 4. Alg. 3: Gumbel-softmax, step by step
#
# The dVAE of DALL·E (Ramesh et al. 2021) replaces the nearest-code lookup by a *sample*: the
# encoder outputs logits ℓ over the K codes, Gumbel noise g = −log(−log U) with U ~ Uniform(0, 1)
# turns the argmax of ℓ + g into a sample of softmax(ℓ) (the Gumbel-max trick), and the softmax
# with temperature τ relaxes that argmax into weights the gradient can flow through:
#
# w = softmax((ℓ + g)/τ),  z_q = Σ_k w_k e_k.
#
# As τ → 0 the weights approach the one-hot of the sample; the *hard* (straight-through) variant
# uses that one-hot forward and the soft gradient backward. We recompute one forward pass of
# `GumbelQuantizer` by hand, with the same random numbers.

# %%
torch.manual_seed(0)
gq = GumbelQuantizer(in_channels=3, codebook_size=4, dim=2, tau=0.7, hard=False)
h = torch.randn(1, 3, 1, 2)                                  # two positions

torch.manual_seed(123)
out = gq(h)                                                  # draws U internally
torch.manual_seed(123)
U = torch.rand(1, 4, 1, 2)                                   # the same U
logits = gq.proj(h)                                          # ℓ = f(z_e), (1, K, 1, 2)
g = -torch.log(-torch.log(U))                                # Gumbel(0, 1)
weights = torch.softmax((logits + g) / gq.tau, dim=1)        # Alg. 3
z_q = torch.einsum("bkhw,kd->bdhw", weights, gq.embedding)   # Σ_k w_k e_k
print("weights per position:\n", weights.squeeze().T.detach())
assert torch.allclose(out.z_q, z_q, atol=1e-6)
assert torch.equal(out.indices, (logits + g).argmax(1))      # the token is the Gumbel-max sample
assert torch.allclose(weights.sum(1), torch.ones(1, 1, 2))

gq.hard = True
torch.manual_seed(123)
hard = gq(h)
assert torch.equal(hard.z_q, gq.indices_to_codes(out.indices))   # hard: exactly the sampled code
print("KL(q ‖ uniform) =", round(out.losses["kl"].item(), 4), "nats")

# %% [markdown]
# Drag τ: the same logits and noise, softer or sharper. At small τ the soft sample is practically
# one-hot; the hard path is exactly one-hot at every τ. Training anneals τ from about 1 down to
# 1/16 (`museumtok.quantize.tau_schedule`); notebook 04_4 follows a dVAE through it.

# %%
g_fixed = -torch.log(-torch.log(torch.rand(8, generator=torch.Generator().manual_seed(4))))
ell = torch.randn(8, generator=torch.Generator().manual_seed(2))


def show_tau(tau=1.0):
    soft = gumbel_softmax(ell[None], tau, hard=False, g=g_fixed[None])[0]
    fig = go.Figure([go.Bar(y=torch.softmax(ell, 0), name="softmax(ℓ)  (the distribution sampled)"),
                     go.Bar(y=soft, name=f"soft sample, τ = {tau:.3g}")])
    fig.update_layout(height=340, xaxis_title="code k", yaxis_title="weight", barmode="group")
    fig.show()
    return soft


interact(show_tau, tau=FloatLogSlider(value=1.0, base=10, min=-2, max=1, step=0.05, description="τ"));

# %%
peaks = [show_tau(t).max().item() for t in (5.0, 1.0, 0.1, 0.01)]
print("largest weight at τ = 5, 1, 0.1, 0.01:", [round(p, 4) for p in peaks])
assert peaks == sorted(peaks) and peaks[-1] > 0.99

# %% [markdown]
# ## 5. Beyond the review: codebooks that cannot die (FSQ, LFQ)
#
# Two later quantizers drop the learned codebook altogether, and with it the codebook loss, the
# EMA and the dead codes.
#
# **FSQ** (Mentzer et al. 2024, arXiv:2309.15505) squashes each of d channels with
# f(z) = tanh(z + s)·h − o and rounds it (STE) to one of L_i levels; the codebook is the grid of
# Π L_i points. **LFQ** (MAGVIT-v2, Yu et al. 2024, arXiv:2310.05737) keeps only the sign of each
# channel — K = 2^d codes on the corners of a cube — and adds an entropy penalty,
# E[H(q(c|z))] − H(E[q(c|z)]): confident per vector, spread over the batch.
#
# Below, FSQ's bound and rounding for L = 5 and L = 8 (even L is shifted by ½ so the levels stay
# symmetric), and the round trip index → code → index on both quantizers.

# %%
from museumtok.quantize import FSQ, LFQ

fsq = FSQ([8, 5, 5, 5])                                        # K = 1000, the paper's 2^10 row
zs = torch.linspace(-4, 4, 801)[:, None].expand(-1, 4)
fig = go.Figure()
for ch, L in ((0, 8), (1, 5)):
    fig.add_trace(go.Scatter(x=zs[:, ch], y=fsq.bound(zs)[:, ch], name=f"f(z), L = {L}", line=dict(dash="dot")))
    fig.add_trace(go.Scatter(x=zs[:, ch], y=fsq.quantize(zs)[:, ch] * (L // 2), name=f"round f(z), L = {L}"))
fig.update_layout(height=360, xaxis_title="z", yaxis_title="level", title="FSQ: bound, then round")
fig.show()

z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
out = fsq(z)
assert torch.equal(fsq.indices_to_codes(out.indices), out.z_q)
assert [fsq.quantize(3 * zs)[:, i].unique().numel() for i in range(4)] == [8, 5, 5, 5]   # every level reachable
print(f"FSQ: K = {fsq.codebook_size}, batch usage {out.stats['usage']:.3f}, perplexity {out.stats['perplexity']:.1f}")

lfq = LFQ(codebook_size=2 ** 8, inv_temperature=1.0)
z = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(0))
out = lfq(z)
assert torch.equal(lfq.indices_to_codes(out.indices), out.z_q)
# the entropy terms against the brute-force softmax over all 256 corners, q(c|z) ∝ exp(−‖z − c‖²/τ)
flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
probs = torch.softmax(-torch.cdist(flat, lfq.implicit_codebook).pow(2), dim=1)
H = lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1)  # noqa: E731
assert abs(out.stats["per_sample_entropy"] - H(probs).mean().item()) < 1e-3
assert abs(out.stats["batch_entropy"] - H(probs.mean(0)).item()) < 1e-3
print({k: round(v, 3) for k, v in out.stats.items()}, "max entropy log K =", round(8 * 0.6931, 3))

# %% [markdown]
# ## Summary
#
# | | gradient to the encoder | codebook update | failure mode |
# |---|---|---|---|
# | VQ, codebook loss | STE (Alg. 2) + β·commitment | SGD, per-code rate ∝ n_k | dead codes; divergence at large η |
# | VQ, EMA (Alg. 1, paper form) | STE + β·commitment | running mean, decay γ, Laplace ε | dead codes |
# | + restart | same | dead codes moved onto encoder outputs | — |
# | Gumbel (Alg. 3) | soft weights (or straight-through) | gradient through Σ w_k e_k | τ too low too early |
# | FSQ | STE through rounding | none (fixed grid) | — (no codebook to collapse) |
# | LFQ | STE through sign + entropy penalty | none (cube corners) | low batch entropy without the penalty |
#
# Notebook 04_3 trains a full VQ-VAE with these pieces; 04_4 the dVAE.
