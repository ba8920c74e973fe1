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
# # 4.3 · VQ-VAE: an image as a grid of codebook indices
#
# **What you will learn**
#
# - the three terms of the VQ-VAE loss (van den Oord, Vinyals & Kavukcuoglu, *Neural Discrete
#   Representation Learning*, NeurIPS 2017, arXiv:1711.00937, eq. 3) and which parameters each one
#   trains — checked against `museumtok.quantize.vq.VectorQuantizer`;
# - what the commitment weight **β** does (a slider);
# - how codebook **perplexity** moves during a short training run, and what dead-code restarts do;
# - the **usage histogram** of the bundled `vqvae-f8-k1024` tokenizer on Kodak images;
# - what the tokens keep as the number of codes **K** shrinks.
#
# ```
# x (B,3,S,S) ─Encoder─▶ z_e (B,D,S/8,S/8) ─nearest e_k─▶ k (B,S/8,S/8)  ← the tokens
#                                      z_q = e_k (straight-through) ─Decoder─▶ x̂ (B,3,S,S)
# ```

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.3 trình bày VQ-VAE: bộ mã hoá biến ảnh thành lưới vectơ $z_e$, mỗi vectơ được thay bằng từ mã
# gần nhất, rồi bộ giải mã dựng lại ảnh $\hat{x}$. Notebook tính tay ba số hạng của hàm tổn thất (tái
# tạo, bảng mã, cam kết) và kiểm tra xem mỗi số hạng cập nhật phần nào của mô hình. Anh chị sẽ kéo
# thanh trượt $\beta$, theo dõi độ bối rối của bảng mã trong một lần huấn luyện ngắn (có và không khởi
# động lại mã chết), xem biểu đồ mức độ sử dụng mã của bộ token hoá `vqvae-f8-k1024` trên ảnh Kodak,
# và thấy ảnh tái tạo xấu đi thế nào khi bảng mã bị thu nhỏ.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | VQ-VAE | VQ-VAE (vector-quantized variational autoencoder) | — |
# | ảnh gốc | original image | $x$ |
# | ảnh tái tạo | reconstructed image (reconstruction) | $\hat{x}$ |
# | hàm tổn thất | loss function | $\mathcal{L}$ |
# | tổn thất tái tạo | reconstruction loss | $\mathcal{L}_{\text{rec}}$, $\lVert x - \hat{x} \rVert_2^2$ |
# | lưới token | token grid | $h\times w$ |
# | hệ số giảm mẫu không gian | spatial downsampling factor | $f$ |
# | lô | batch | $B$ |
# | mức độ sử dụng mã | code usage (usage histogram) | — |
# | cắt tỉa bảng mã | codebook pruning | $K'$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from ipywidgets import FloatSlider, interact
from plotly.subplots import make_subplots

from museumtok import registry
from museumtok.data.dataset import eval_batch
from museumtok.eval.metrics import image_metrics
from museumtok.metrics import code_counts, codebook_stats
from museumtok.models import VQVAE, VQVAEConfig
from museumtok.paths import fast_mode
from museumtok.quantize.vq import VectorQuantizer
from museumtok.viz import codebook_usage_figure

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. The three loss terms
#
# With sg[·] the stop-gradient and e the code nearest to z_e:
#
# $$\mathcal L = \underbrace{\lVert x-\hat x\rVert^2}_{\text{reconstruction}}
#  + \underbrace{\lVert \mathrm{sg}[z_e]-e\rVert^2}_{\text{codebook}}
#  + \beta\,\underbrace{\lVert z_e-\mathrm{sg}[e]\rVert^2}_{\text{commitment}}$$
#
# The first trains encoder and decoder (through the straight-through copy z_q = z_e + sg[e − z_e]),
# the second moves only the codes, the third pulls only the encoder towards its codes. Here is a
# tiny model on one small image, every term recomputed by hand.

# %%
tiny = VQVAE(VQVAEConfig(f=4, channels=(8, 16, 16), codebook_size=16, dim=4, ema=False, kmeans_init=False,
                         restart_dead_after=0, beta=0.25))
x = torch.rand(1, 3, 16, 16)
out = tiny(x)
z_e, e = out.z_e, tiny.quantizer.indices_to_codes(out.quant.indices)           # (1, 4, 4, 4) each

recon = ((x - out.x_hat) ** 2).mean()
codebook_term = ((z_e.detach() - e) ** 2).mean()
commitment = ((z_e - e.detach()) ** 2).mean()
print(f"reconstruction {recon.item():.5f}, codebook {codebook_term.item():.5f}, commitment {commitment.item():.5f}")

assert torch.allclose(out.losses["recon"], recon)
assert torch.allclose(out.losses["codebook"], codebook_term)
assert torch.allclose(out.losses["commitment"], commitment)
assert torch.allclose(out.loss, recon + codebook_term + 0.25 * commitment), "β sits on the commitment term"

# %% [markdown]
# Which parameters does each term reach? Back-propagate one term at a time and look where gradient lands.

# %%
def grad_norms(term: torch.Tensor) -> dict[str, float]:
    tiny.zero_grad()
    term.backward(retain_graph=True)
    parts = {"encoder": tiny.encoder, "codebook": tiny.quantizer, "decoder": tiny.decoder}
    return {k: sum(float(p.grad.norm()) for p in m.parameters() if p.grad is not None) for k, m in parts.items()}


out = tiny(x)
reach = {name: grad_norms(out.losses[name] if name != "commitment" else 0.25 * out.losses[name])
         for name in ("recon", "codebook", "commitment")}
for name, g in reach.items():
    print(f"{name:>11}: " + ", ".join(f"{k} {v:.2e}" for k, v in g.items()))
assert reach["recon"]["codebook"] == 0 and reach["recon"]["encoder"] > 0 and reach["recon"]["decoder"] > 0
assert reach["codebook"]["encoder"] == 0 and reach["codebook"]["decoder"] == 0 and reach["codebook"]["codebook"] > 0
assert reach["commitment"]["codebook"] == 0 and reach["commitment"]["decoder"] == 0 and reach["commitment"]["encoder"] > 0

# %% [markdown]
# ## 2. β: how hard the encoder is held to its codes
#
# The gradient the commitment term sends to z_e is 2β(z_e − e)/n (n elements, a mean). A small β
# lets the encoder wander off the codebook (codes must chase it); a large one freezes the encoder
# near whatever codes it has. The paper found results robust for β ∈ [0.1, 2.0] and used 0.25.
# Move the slider: the arrows are −∂L/∂z_e for 2-D encoder outputs (dots) and their codes (crosses).

# %%
g2 = torch.Generator().manual_seed(1)
vq2 = VectorQuantizer(dim=2, codebook_size=4, beta=0.25)
with torch.no_grad():
    vq2.embedding.copy_(torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]))
z2 = (torch.randn(1, 2, 3, 4, generator=g2) * 0.9)                              # 12 encoder outputs


def commitment_pull(beta: float):
    vq2.beta = beta
    z = z2.clone().requires_grad_(True)
    q = vq2(z)
    q.loss.backward()
    pts = z.detach().flatten(2)[0].T                                              # (12, 2)
    codes = vq2.indices_to_codes(q.indices).flatten(2)[0].T.detach()
    grad = z.grad.flatten(2)[0].T
    n = z.numel()
    assert torch.allclose(grad, 2 * beta * (pts - codes) / n, atol=1e-7), "∂(β·commitment)/∂z_e = 2β(z_e − e)/n"
    return pts, codes, grad


def show_beta(beta=0.25):
    pts, codes, grad = commitment_pull(beta)
    step = -grad * pts.numel() / 2                                                # drawn at the scale of one unit step
    fig = go.Figure()
    for p, s in zip(pts, step):
        fig.add_annotation(x=float(p[0] + s[0]), y=float(p[1] + s[1]), ax=float(p[0]), ay=float(p[1]),
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2, arrowcolor="#d62728")
    fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", name="z_e"))
    fig.add_trace(go.Scatter(x=vq2.codebook[:, 0].detach(), y=vq2.codebook[:, 1].detach(), mode="markers",
                             marker={"symbol": "x", "size": 14}, name="codes e_k"))
    fig.update_layout(title=f"β = {beta:.2f}: pull of the commitment term on each z_e", height=420,
                      xaxis={"range": [-2.5, 2.5]}, yaxis={"range": [-2.5, 2.5], "scaleanchor": "x"})
    return fig


interact(show_beta, beta=FloatSlider(value=0.25, min=0.0, max=2.0, step=0.05));

# %%
show_beta(1.5)          # the callback with another β: commitment_pull asserts the gradient 2β(z_e − e)/n

# %% [markdown]
# ## 3. Perplexity during a short training run
#
# Perplexity exp H(p̂) counts how many codes are *effectively* in use in a batch (K under uniform
# use, 1 under collapse). We train a small VQ-VAE on 32 px crops of the training artworks with
# the package's own training loop (`museumtok.train.autoencoder.fit`), once with dead-code
# restarts and once without, and plot the batch perplexity logged every few steps.

# %%
import tempfile
from pathlib import Path

from museumtok.train.autoencoder import RunLog, fit, train_images
from museumtok.train.vqvae import VQVAETrainConfig

images, _ = train_images(max_side=256)
steps = 30 if FAST else 400
curves = {}
for restart in (20, 0):
    cfg = VQVAETrainConfig(f=4, channels=(16, 32, 32), codebook_size=128, dim=8, steps=steps, batch_size=8,
                           crop=32, warmup=5, lr=2e-3, log_every=2 if FAST else 10, eval_every=10**9,
                           save_every=10**9, max_minutes=0, restart_dead_after=restart, resume=False)
    torch.manual_seed(0)
    model = VQVAE(cfg.model)
    run = Path(tempfile.mkdtemp()) / f"restart{restart}"
    fit(model, cfg, images, run, progress=False)
    curves[restart] = RunLog(run).rows("train")

fig = make_subplots(rows=1, cols=2, subplot_titles=("batch perplexity (of K=128)", "reconstruction MSE"))
for restart, rows in curves.items():
    name = f"restart after {restart} unused steps" if restart else "no restart"
    s = [int(r["step"]) for r in rows]
    fig.add_trace(go.Scatter(x=s, y=[float(r["perplexity"]) for r in rows], name=name, legendgroup=name), 1, 1)
    fig.add_trace(go.Scatter(x=s, y=[float(r["recon"]) for r in rows], name=name, legendgroup=name,
                             showlegend=False), 1, 2)
fig.update_layout(height=330, xaxis_title="step", xaxis2_title="step")
fig

# %%
last = curves[20][-1]
# the logged perplexity is exp(H) of this batch's code frequencies: never more than K or than the batch's vector count
assert 1.0 <= float(last["perplexity"]) <= 128
# usage = used/K is logged rounded to 6 decimals: compare counts of codes (integers), not floats
used, dead = round(float(last["usage"]) * 128), int(float(last["dead_codes"]))
assert used + dead == 128, (last["usage"], last["dead_codes"])
assert math.isclose(float(last["usage"]), 1 - dead / 128, abs_tol=1e-6)

# %% [markdown]
# ## 4. The bundled tokenizer's codebook on Kodak
#
# `vqvae-f8-k1024` was trained on 64 px crops of the 80 training artworks (see its model card).
# Here its tokens on Kodak photographs, which it never saw, at M = 256 (128 px): how often each of
# the 1024 codes appears, most used first.

# %%
NAME = "vqvae-f8-k1024"
have_checkpoint = NAME in registry.names("tokenizer")
if have_checkpoint:
    tok = registry.load(NAME)
    vq_model = tok.model
else:  # a fresh clone without the checkpoint: use the small model trained above
    print(f"{NAME} is not bundled here; showing the notebook's small model instead")
    vq_model = model.eval()
f = vq_model.f
kodak, _ = eval_batch("kodak", 128, limit=4 if FAST else None)
idx = vq_model.encode_indices(kodak)                                             # (N, 128/f, 128/f)
counts = code_counts(idx, vq_model.codebook_size)
st = codebook_stats(counts, vq_model.codebook_size, counts=True)
p = counts[counts > 0].double() / counts.sum()
assert math.isclose(st.perplexity, math.exp(float(-(p * p.log()).sum())), rel_tol=1e-9), "perplexity = exp H(p̂)"
codebook_usage_figure(counts, title=f"{len(kodak)} Kodak images, {idx.numel()} tokens: perplexity "
                      f"{st.perplexity:.0f}, {st.used} codes used, {st.dead} never")

# %% [markdown]
# ## 5. Reconstructions against K
#
# What if the codebook were smaller? Keep only the K′ codes used most often on these images and
# force every position to the nearest of them (`VQVAE.encode_indices_restricted`). This is a
# pruning, not a retraining — a model trained with K′ codes would place them better — but it shows
# how the reconstruction degrades as log2 K′, the bits per token, falls.

# %%
order = torch.argsort(counts, descending=True)
Ks = [k for k in (8, 32, 128, 512, vq_model.codebook_size) if k <= vq_model.codebook_size]
x0 = kodak[:1]
panels, psnrs = [], []
for K_ in Ks:
    k_idx = vq_model.encode_indices_restricted(kodak, order[:K_])
    assert int(k_idx.unique().numel()) <= K_
    x_hat = vq_model.decode_indices(k_idx)
    psnrs.append(float(image_metrics(kodak, x_hat, with_lpips=False)["psnr"].mean()))
    panels.append(x_hat[0])
everything = torch.arange(vq_model.codebook_size)
assert torch.equal(vq_model.encode_indices_restricted(kodak, everything), vq_model.encode_indices(kodak)), \
    "with every code allowed, the restricted search is the plain encoding"

fig = make_subplots(rows=1, cols=len(Ks) + 1, subplot_titles=["original"] + [f"K′={k}: {p:.1f} dB" for k, p in zip(Ks, psnrs)])
for j, im in enumerate([x0[0]] + panels):
    fig.add_trace(go.Image(z=(im.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()), 1, j + 1)
fig.update_xaxes(visible=False)
fig.update_yaxes(visible=False)
fig.update_layout(height=260, margin={"l": 0, "r": 0, "t": 30, "b": 0})
fig

# %%
go.Figure(go.Scatter(x=[math.log2(k) for k in Ks], y=psnrs, mode="lines+markers")).update_layout(
    xaxis_title="bits per token log2 K′", yaxis_title="mean PSNR on these Kodak images (dB)", height=300)

# %% [markdown]
# **Takeaways.** The reconstruction term trains encoder and decoder through the straight-through
# copy; the codebook term (or its EMA replacement) moves the codes; β·commitment keeps the encoder
# near them. Perplexity collapses early in training unless unused codes are restarted, and even a
# healthy 1024-code book uses only part of its codes on a handful of images. More codes buy PSNR
# only logarithmically in bits.
