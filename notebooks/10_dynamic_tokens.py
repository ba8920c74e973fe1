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
# # 10 · Dynamic token budgets: how many tokens does an artwork need? (§10)
#
# The review's §10 asks for *dynamic token allocation*: spend few tokens on a plain image and many
# on a detailed one, or few when the LLM's context is nearly full. That needs two things this
# notebook builds, each from its paper and each checked against the package:
#
# 1. **an ordered token sequence**, so that any prefix of it is a usable image: *nested dropout*
#    (Rippel, Gelbart & Adams 2014, "Learning Ordered Representations with Nested Dropout", ICML,
#    arXiv:1402.0915), as trained into the bundled `anym-k1000` tokenizer — you will see its prefixes
#    decode coarse to fine;
# 2. **a way to pool N patch features into M tokens**: the Perceiver Resampler (Flamingo, §5.4) and
#    *TokenLearner* (Ryoo, Piergiovanni, Arnab, Dehghani & Angelova 2021, "TokenLearner: What Can 8
#    Learned Tokens Do for Images and Videos?", NeurIPS, arXiv:2106.11297), compared at equal M;
#
# and then asks the workshop's question: **can the budget be chosen from the image's content**
# (its edge density, which predicts reconstruction quality, §9.3) better than one fixed M for all?
#
# Sliders everywhere; each slider's function is also called once below it with other values, so
# running the notebook (`make book`, the tests) checks the callbacks too.

# %% [markdown]
# ## Tóm tắt
#
# Mục 10 đặt ra bài toán ngân sách token động: ảnh đơn giản dùng ít token, ảnh nhiều chi tiết dùng
# nhiều. Notebook giải thích dropout lồng nhau (Rippel và cộng sự, 2014): khi huấn luyện chỉ giữ $m$
# token đầu, nên mọi tiền tố của chuỗi token đều giải mã được, từ thô đến mịn, và anh chị kéo thanh
# trượt để xem điều đó trên bộ token hoá `anym-k1000`. Sau đó notebook so sánh TokenLearner (Ryoo và
# cộng sự, 2021) với bộ lấy mẫu lại Perceiver ở cùng số token $M$, huấn luyện trực tiếp vài giây và
# bằng hai bản lưu kèm theo. Cuối cùng, anh chị chọn số token cho từng ảnh theo mật độ cạnh và so với
# một $M$ cố định có cùng số token trung bình.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | cấp phát token động | dynamic token allocation | — |
# | bộ token hoá M tuỳ ý | any-M tokenizer | — |
# | dropout lồng nhau | nested dropout | — |
# | tiền tố của chuỗi token | token prefix | $k_{1:M}$ |
# | bộ lấy mẫu lại Perceiver | Perceiver Resampler | — |
# | TokenLearner | TokenLearner | $\alpha_i$ |
# | bản đồ chú ý không gian | spatial attention map | $\alpha_i(p)$ |
# | ngân sách token theo nội dung | content-adaptive token budget | $M_i$ |
# | phân bổ tối ưu (nhìn lại) | optimal allocation (in hindsight) | — |
# | mật độ cạnh | edge density | — |
# | hệ số tương quan hạng Spearman | Spearman rank correlation | $\rho$ |
# | lưới token | token grid | $h\times w$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import json
import math
import os

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display
from ipywidgets import FloatSlider, IntSlider, interact
from plotly.subplots import make_subplots
from scipy.stats import spearmanr

from museumtok import registry
from museumtok.data.dataset import eval_batch
from museumtok.dynamic import allocate_by_content, allocate_optimal, budget_report, prefix_curves
from museumtok.eval.metrics import evaluate_tokenizer
from museumtok.metrics import psnr
from museumtok.metrics.content import edge_density, spearman
from museumtok.models.anym import keep_mask, sample_keep
from museumtok.models.pooling import PooledAutoencoder
from museumtok.models.tokenlearner import TokenLearner
from museumtok.paths import CHECKPOINT_DIR, fast_mode
from museumtok.train.pooling import PoolingTrainConfig, fit_pooler, held_out_psnr, training_images
from museumtok.viz import image_row_figure, lines_figure

FAST = fast_mode()
LONG = os.environ.get("MUSEUMTOK_LONG", "0") not in ("", "0")   # the optional long cell of section 2
torch.set_num_threads(1)
tok = registry.load("anym-k1000")
anym = tok.model.eval()
x_test, entries = eval_batch("artworks-test", anym.config.image_size, limit=6 if FAST else None)
print(f"anym-k1000: M = 1…{anym.max_tokens}, K = {anym.codebook_size}; {len(x_test)} held-out artworks at "
      f"{anym.config.image_size} px; fast mode: {FAST}")

# %% [markdown]
# ## 1. Nested dropout: an ordered token sequence
#
# An ordinary autoencoder spreads information over all its units in no particular order: drop the
# last half and the reconstruction breaks. **Nested dropout** (Rippel et al. 2014) trains with a
# random cut: for each training example draw b from a distribution p(b) over 1…K, keep units 1…b and
# zero the rest, and reconstruct from what is left. Because unit 1 is kept every time, unit 2 almost
# every time, and so on, the first units must carry what matters most, and each later unit adds what
# the earlier ones missed. For a linear autoencoder the paper proves that this recovers exactly the
# PCA basis *in order* (eigenvalues decreasing), something a plain autoencoder does not.
#
# `anym-k1000` applies the same idea to *tokens*: the encoder (conv net + Perceiver Resampler + FSQ)
# writes 64 tokens k₁…k₆₄; in training each image keeps only its first m tokens,
# m ~ ½·Uniform{1…64} + ½·⌊64^U⌋ (a log-uniform half, so small m, where the order is learned, come
# up often), and the decoder must rebuild the image from them. At inference **the budget M is just
# where you cut the sequence**: k₁…k_M = the *prefix* of length M.
#
# Checked below: the training mask keeps a prefix; P(m = 1) = ½·(1/64) + ½·(log 2/log 64) = 0.0911
# by the mixture's formula; and the tokens do not depend on M (encoding at M gives the first M of the
# encoding at 64: one encoding serves every budget).

# %%
m = sample_keep(200_000, 64, torch.Generator().manual_seed(0))
mask = keep_mask(m[:5], 64)
assert all(bool(row[: int(k)].all()) and not bool(row[int(k):].any()) for row, k in zip(mask, m[:5]))
p1 = 0.5 / 64 + 0.5 * math.log(2) / math.log(64)
print(f"P(m = 1): sampled {float((m == 1).float().mean()):.4f}, formula {p1:.4f}")
assert abs(float((m == 1).float().mean()) - p1) < 0.003

k64 = tok.encode_tensor(x_test, 64)
for M in (1, 5, 16, 63):
    assert torch.equal(tok.encode_tensor(x_test, M), k64[:, :M]), "the first M tokens do not depend on M"

# %% [markdown]
# ### The picture: prefixes decode coarse to fine
#
# One artwork, its first M tokens decoded, M doubling from 1 to 64. One token (10 bits) already gives
# the layout of light and colour; detail arrives with later tokens. The any-M tokenizer is small and
# CPU-trained at 64 px, so "fine" is relative: compare the panels with each other.

# %%
curves = prefix_curves(anym, x_test)                     # (N, 64): PSNR of every prefix of every image
Ms = [1, 2, 4, 8, 16, 32, 64]
i0 = 0
panels = [("original", x_test[i0])] + [(f"M={M}: {curves[i0, M - 1]:.1f} dB", anym.decode_indices(k64[i0:i0 + 1, :M])[0])
                                       for M in Ms]
image_row_figure(panels, height=230)

# %%
def show_prefix(M=8, image=0):
    """Artwork ``image`` decoded from its first M tokens, and where that sits on its PSNR curve."""
    x_hat = anym.decode_indices(k64[image:image + 1, :M])[0]
    p = float(psnr(x_test[image:image + 1], x_hat[None]))
    assert abs(p - curves[image, M - 1]) < 1e-3, "the curve is the PSNR of each prefix"
    fig = make_subplots(rows=1, cols=3, subplot_titles=("original", f"first {M} tokens ({M * math.log2(1000):.0f} bits)",
                                                        "PSNR of every prefix"))
    for j, im in enumerate((x_test[image], x_hat)):
        fig.add_trace(go.Image(z=(im.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()), 1, j + 1)
    fig.add_trace(go.Scatter(x=list(range(1, 65)), y=curves[image], name=entries[image].title[:30]), 1, 3)
    fig.add_trace(go.Scatter(x=[M], y=[p], mode="markers", marker=dict(size=12, color="crimson"), name=f"M={M}"), 1, 3)
    fig.update_xaxes(type="log", row=1, col=3)
    fig.update_layout(height=300, margin=dict(t=40, b=10))
    return fig


interact(show_prefix, M=IntSlider(8, 1, 64, description="M"), image=IntSlider(0, 0, len(x_test) - 1, description="artwork"));

# %%
show_prefix(M=5, image=min(1, len(x_test) - 1))     # the callback once more, with other values

# %%
mean_curve = curves.mean(0)
fig = lines_figure({"mean over the held-out artworks": (list(range(1, 65)), mean_curve)}, "M (prefix length)",
                   "PSNR (dB)", "anym-k1000: quality of every prefix", log_x=True, markers=False, height=320)
for c in curves:
    fig.add_trace(go.Scatter(x=list(range(1, 65)), y=c, mode="lines", line=dict(width=0.7, color="lightgrey"),
                             showlegend=False))
fig.show()
gain = {M: mean_curve[M - 1] - mean_curve[0] for M in (8, 16, 64)}
print("mean PSNR gain over M = 1: " + ", ".join(f"M={M}: +{g:.2f} dB" for M, g in gain.items()))
assert mean_curve[63] > mean_curve[0] and mean_curve[7] > mean_curve[0]

# %% [markdown]
# Most of the gain comes from the first 8–16 tokens; after that the curve is nearly flat (this
# small model's limit, not nested dropout's). Two consequences for budgets: below ~8 tokens every
# token counts, above ~16 extra tokens buy little, whatever the image.
#
# ## 2. Pooling N patches into M tokens: TokenLearner against the Perceiver Resampler
#
# Both turn the N = 64 patch features of the encoder (8×8 grid, width d) into M tokens.
#
# - **Perceiver Resampler** (Alayrac et al. 2022; notebook 05_4): M learned *queries* attend over the
#   patches (and over each other), twice; the queries are the same for every image, what they pick
#   depends on the attention.
# - **TokenLearner** (Ryoo et al. 2021): a small conv net looks at the feature map and outputs M
#   *spatial attention maps* α₁…α_M, each a softmax over the N positions p; token i is the weighted
#   average Σ_p α_i(p)·v(p) of the (linearly transformed) features v. No queries, one shot; the maps
#   are computed from the image itself. The paper shows 8–16 such tokens match ViTs that keep
#   hundreds.
#
# ```
# x_f (B, N, d) ─LN─▶ (B, d, h, w) ─Conv 3×3─GELU─Conv 1×1─▶ (B, M, h, w) ─softmax over the N positions─▶ α (B, M, N)
# x_f ─LN─Linear─▶ v (B, N, d)          tokens = α · v  (B, M, d)
# ```
#
# `museumtok.models.tokenlearner.TokenLearner` implements it; here every line of it is recomputed
# by hand on a small random input.

# %%
torch.manual_seed(0)
tl = TokenLearner(dim=8, num_tokens=4)
feats = torch.randn(2, 16, 8)                                # B = 2 images, N = 4×4 positions, d = 8
out = tl(feats)
logits = tl.attention(tl.norm(feats).transpose(1, 2).reshape(2, 8, 4, 4)).flatten(2)   # (B, M, N)
alpha = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)                      # softmax by hand
v = tl.values(tl.norm(feats))
tokens = torch.stack([torch.stack([(alpha[b, i, :, None] * v[b]).sum(0) for i in range(4)]) for b in range(2)])
assert torch.allclose(out.maps, alpha, atol=1e-6) and torch.allclose(out.latents, tokens, atol=1e-5)
assert torch.allclose(out.maps.sum(-1), torch.ones(2, 4)), "each map is a distribution over the positions"
print("maps (B, M, N):", tuple(out.maps.shape), " tokens (B, M, d):", tuple(out.latents.shape), " each map sums to 1 ✓")

# %% [markdown]
# ### Equal M, equal everything else
#
# `museumtok.models.pooling.PooledAutoencoder` puts either pooler between the same conv encoder and
# the same decoder (the any-M tokenizer's query-grid resampler + conv decoder), with FSQ on each
# token, so both pay exactly M·log2 1000 bits. Here M = 16 tokens of a 64 px crop (160 bits).
#
# **Live demo (seconds, not minutes).** Both poolers train here from scratch on the training
# artworks, same crops, same schedule, for a few seconds each: enough to see the curves start, not to
# rank them. The ranking comes from the two bundled checkpoints below, trained with the same code for
# 800 steps each (`museumtok train pooling`).

# %%
DEMO_S = 3 if FAST else 20                                   # seconds of training per pooler, live
images = training_images(max_side=256)
live = {}
for pooler in ("tokenlearner", "resampler"):
    cfg = PoolingTrainConfig(pooler=pooler, num_tokens=16, max_minutes=DEMO_S / 60, log_every=5)
    model, hist, wall = fit_pooler(cfg, images)
    live[pooler] = (model, hist)
    print(f"{pooler:>12}: {hist[-1]['step'] if hist else 0} steps in {wall:.0f} s, pooler {model.pooler_parameters():,} "
          f"parameters, last training PSNR {hist[-1]['psnr'] if hist else float('nan'):.2f} dB")
lines_figure({p: ([h["step"] for h in hist], [h["psnr"] for h in hist]) for p, (_, hist) in live.items()},
             "step", "training PSNR (dB)", f"live demo: {DEMO_S} s of training each", markers=False, height=300)

# %%
CKPT = {p: CHECKPOINT_DIR / f"pool-{p}-m16" for p in ("tokenlearner", "resampler")}
have = all((d / "model.safetensors").exists() for d in CKPT.values())
if have:
    trained = {p: PooledAutoencoder.from_pretrained(str(d)).eval() for p, d in CKPT.items()}
    info = {p: json.loads((d / "training.json").read_text()) for p, d in CKPT.items()}
    sets = ("artworks-test",) if FAST else ("artworks-test", "kodak")
    res = {p: {s: held_out_psnr(mdl, s, limit=6 if FAST else None) for s in sets} for p, mdl in trained.items()}
    rows = [f"| {p} | {trained[p].pooler_parameters():,} | {info[p]['steps_done']} | {info[p]['wall_time_s'] / 60:.1f} | "
            + " | ".join(f"{res[p][s]['psnr']:.2f}" for s in sets) + " |" for p in trained]
    display(Markdown(f"| pooler (M = 16, 160 bits) | pooler parameters | steps | minutes | "
                     + " | ".join(f"PSNR {s} (dB)" for s in sets) + " |\n|---|---|---|---|" + "---|" * len(sets)
                     + "\n" + "\n".join(rows)))
    for s in sets:    # the cards' numbers are these numbers (same function, all images)
        if not FAST:
            card = {r["set"]: r["psnr"] for r in info["tokenlearner"]["metrics"]}
            assert abs(card[s] - res["tokenlearner"][s]["psnr"]) < 1e-3
else:
    print("the bundled pool-*-m16 checkpoints are missing: using the live models (seconds of training)")
    trained = {p: mdl for p, (mdl, _) in live.items()}

# %% [markdown]
# Where does each pooler look? For one artwork, the map of token i: TokenLearner's softmax map α_i,
# and the resampler's last-layer attention of latent i over the patches (renormalised to the patches).

# %%
def show_maps(token=0, image=0):
    """Token ``token``'s pooling map over the 8×8 patches of artwork ``image``, for both poolers."""
    x = x_test[image:image + 1]
    fig = make_subplots(rows=1, cols=4, subplot_titles=("original", "TokenLearner α_i", "resampler attention",
                                                         "reconstructions (TL | resampler)"))
    fig.add_trace(go.Image(z=(x[0].permute(1, 2, 0) * 255).round().byte().numpy()), 1, 1)
    for col, p in ((2, "tokenlearner"), (3, "resampler")):
        with torch.no_grad():
            _, maps = trained[p].tokens(x, return_maps=True)
        assert torch.allclose(maps.sum(-1), torch.ones_like(maps.sum(-1)), atol=1e-5)
        g = trained[p].config.grid
        fig.add_trace(go.Heatmap(z=maps[0, token].view(g, g).flip(0).numpy(), colorscale="Viridis", showscale=False), 1, col)
    rec = torch.cat([trained[p].reconstruct(x)[0] for p in ("tokenlearner", "resampler")], -1)
    fig.add_trace(go.Image(z=(rec.permute(1, 2, 0) * 255).round().byte().numpy()), 1, 4)
    fig.update_layout(height=280, margin=dict(t=40, b=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


interact(show_maps, token=IntSlider(0, 0, 15, description="token i"),
         image=IntSlider(0, 0, len(x_test) - 1, description="artwork"));

# %%
show_maps(token=5, image=min(2, len(x_test) - 1))

# %% [markdown]
# **Optional, longer (about 8 minutes): train both poolers here for 4 minutes each.** Skipped unless
# the flag is set: start JupyterLab with `MUSEUMTOK_LONG=1 make lab` (or set `LONG = True` in the
# first code cell). It reruns what made the bundled checkpoints, with a wall-clock cap instead of 800 steps.

# %%
if LONG:
    long_res = {}
    for pooler in ("tokenlearner", "resampler"):
        cfg = PoolingTrainConfig(pooler=pooler, num_tokens=16, max_minutes=4, log_every=50)
        model, hist, wall = fit_pooler(cfg, images)
        long_res[pooler] = held_out_psnr(model, "artworks-test")["psnr"]
        print(f"{pooler}: {hist[-1]['step']} steps in {wall / 60:.1f} min, artworks-test {long_res[pooler]:.2f} dB")
else:
    print("optional long training skipped (set MUSEUMTOK_LONG=1 to run it)")

# %% [markdown]
# ## 3. A budget from content, against one M for all
#
# §9.3 found that edge density (the share of pixels on a Sobel edge) predicts how badly a tokenizer
# reconstructs an image. Here: does it also tell *how many tokens* an image should get? The rule
# needs no decoding: M_i ∝ (edge density_i)^γ, rescaled so that the images get **on average the same
# M** as the fixed budget, clipped to 1…64, integers summing exactly to n·M
# (`museumtok.dynamic.allocate_by_content`). γ = 0 is the fixed budget; γ = 1 gives tokens in
# proportion to edges. As a yardstick, the **optimal** allocation of the same total, found in
# hindsight from every prefix's PSNR by dynamic programming (`allocate_optimal`: no rule that decides
# before decoding can beat it).
#
# First the premise, with Spearman's ρ (ours against `scipy.stats.spearmanr`):

# %%
edges = np.array([edge_density(x) for x in x_test])
M_REF = 16
rho = spearman(edges, curves[:, M_REF - 1])
assert abs(rho - spearmanr(edges, curves[:, M_REF - 1]).statistic) < 1e-9
print(f"edge density vs PSNR at M = {M_REF}: Spearman ρ = {rho:.2f} over {len(x_test)} held-out artworks "
      "(the bench: −0.92 for the patch tokenizers, notebook 09)")
fig = go.Figure(go.Scatter(x=edges, y=curves[:, M_REF - 1], mode="markers+text", text=[e.id[:14] for e in entries],
                           textposition="top center"))
fig.update_layout(xaxis_title="edge density", yaxis_title=f"PSNR at M = {M_REF} (dB)", height=320)
fig

# %%
def compare_budgets(mean_M=8, gamma=1.0):
    """Fixed M against the content rule and the hindsight optimum, all with n·mean_M tokens in total."""
    n = len(x_test)
    alloc = {"fixed": np.full(n, mean_M), f"content (γ = {gamma:g})": allocate_by_content(edges, mean_M, gamma=gamma),
             "optimal (hindsight)": allocate_optimal(curves, mean_M)}
    for M in alloc.values():
        assert M.sum() == n * mean_M and M.min() >= 1 and M.max() <= 64
    res = budget_report(curves, alloc)
    fixed, content, best = (r.psnr.mean() for r in res)
    assert best >= max(fixed, content) - 1e-9, "the optimum is at least as good as any allocation of the same total"
    order = np.argsort(edges)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens per artwork (by edge density →)", "PSNR per artwork"))
    for r in res:
        fig.add_trace(go.Bar(y=r.M[order], name=r.name, legendgroup=r.name), 1, 1)
        fig.add_trace(go.Scatter(y=r.psnr[order], mode="lines+markers", name=r.name, legendgroup=r.name,
                                 showlegend=False), 1, 2)
    fig.update_layout(height=340, barmode="group", title=f"mean M = {mean_M}")
    display(Markdown("| budget | mean M | M range | mean PSNR | worst PSNR | PSNR std |\n|---|---|---|---|---|---|\n"
                     + "\n".join("| " + " | ".join(str(v) for v in r.row().values()) + " |" for r in res)))
    return fig, res


interact(compare_budgets, mean_M=IntSlider(8, 2, 32, description="mean M"),
         gamma=FloatSlider(value=1.0, min=0.0, max=2.0, step=0.25, description="γ"));

# %%
fig, res = compare_budgets(mean_M=16, gamma=0.5)
assert np.array_equal(allocate_by_content(edges, 16, gamma=0.0), np.full(len(x_test), 16)), "γ = 0 is the fixed budget"
fig

# %% [markdown]
# **What the numbers say** (15 held-out artworks, workshop mode; see the table above for yours): the
# content rule moves tokens towards the busy paintings and narrows the spread of PSNR a little, but
# its mean PSNR stays within about 0.1 dB of the fixed budget, and even the hindsight optimum gains
# only 0.1–0.3 dB. Edge density predicts an image's PSNR *level*; it does not predict how much PSNR
# the next token buys, and with this tokenizer the busy paintings gain little from extra tokens (their
# curves are flat after ~8 tokens). A budget from content pays off when the quality curves differ in
# *slope*, not just in height: with a stronger tokenizer, or when the goal is a minimum quality per
# image rather than the mean.
#
# ## 4. Every tokenizer, every M it offers
#
# The fixed-grid tokenizers give a few points (their M is set by the grid); the any-M tokenizer a
# curve. Caveat: a tokenizer's M is tied to its working size (64, 128 or 256 px), so two points at the
# same M may describe images of different sizes; the bits-per-pixel plot puts them on one scale.

# %%
SET, LIMIT = "kodak", (3 if FAST else 6)
a, b = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1)
assert abs(float(psnr(a, b)) - 10 * math.log10(1 / 0.01)) < 1e-4          # PSNR = 10·log10(1/MSE) on [0, 1]


def sample_M(entry):
    """All M of a menu; for a continuous knob, a spread of values and the maximum."""
    s = entry.supported_M
    if not entry.m_is_range:
        return list(s)
    grid = (1, 4, 16, 64) if FAST else (1, 2, 4, 8, 16, 32, 64)
    return sorted({m for m in grid if s[0] <= m <= s[-1]} | {s[-1]})


rows = []
for e in registry.entries("tokenizer"):
    if not e.available or (FAST and e.name not in ("anym-k1000", "lloyd-patch-k256", "multiscale-k1000")):
        continue
    t = registry.load(e.name)
    for M in sample_M(e):
        if t.working_size(M) > (128 if FAST else 256):
            continue
        r = evaluate_tokenizer(t, SET, M, limit=LIMIT)
        rows.append({"tokenizer": e.name, "M": M, "size": r["size"], "psnr": r["psnr"], "bpp": r["bpp"]})
        assert abs(r["bits"] - M * math.log2(t.K)) < 1e-6                  # raw bits = M·log2 K
by = {}
for r in rows:
    by.setdefault(r["tokenizer"], []).append(r)
lines_figure({n: ([r["M"] for r in v], [r["psnr"] for r in v]) for n, v in by.items()},
             "M (tokens per image)", f"PSNR on {LIMIT} {SET} images (dB)", "Quality against the token count", log_x=True)

# %%
lines_figure({n: ([r["bpp"] for r in v], [r["psnr"] for r in v]) for n, v in by.items()},
             "bits per pixel (raw, M·log2 K / S²)", f"PSNR on {SET} (dB)", "Quality against the rate", log_x=True)

# %% [markdown]
# **Take-aways.** Nested dropout makes the budget a cut in one token sequence, so it can follow the
# image or the free context at no extra encoding cost. TokenLearner and the Perceiver Resampler are
# two ways to make those M tokens; at M = 16 and equal training the table of section 2 says which one
# our CPU-trained pair favours. And a budget set from content alone is only as good as the content
# statistic's grip on the *slope* of each image's quality curve: here it evens out quality a little
# without raising the mean.
