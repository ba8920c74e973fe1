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
# # 4.6 · MaskGIT: parallel decoding and inpainting on token grids
#
# **What you will learn**
#
# - how MaskGIT (Chang, Zhang, Jiang, Liu & Freeman, *MaskGIT: Masked Generative Image Transformer*,
#   CVPR 2022, arXiv:2202.04200) is trained: mask a fraction γ(r) = cos(πr/2) of the tokens, r ~ U(0, 1),
#   and predict them all at once with a bidirectional transformer;
# - iterative parallel decoding **as the paper does it**: sample every masked token at temperature 1, keep
#   the most probable (with Gumbel noise in that choice, annealed to zero), re-mask the rest — step by step;
# - the review's temperature schedule τ_t = max(τ_min, τ0·α^t), which is **not** MaskGIT's (errata
#   `s4-6-maskgit-decoding`), kept as `decoding="review"` and compared with the paper's on held-out grids;
# - **inpainting**: keep the tokens outside a box ("a visitor standing in front of the painting"), regenerate inside;
# - the cost against a left-to-right autoregressive prior of the same size: T forward passes instead of N;
# - the quality against that prior, trained the same way: held-out bits/token and inpainting PSNR.
#
# ```
# k (h, w) from vqvae-f8-k1024 ─mask─▶ k̃ with [MASK]=K ─Transformer─▶ logits (N, K) ─sample, keep confident─▶ … T steps
# ```
#
# | | the paper (`decoding="paper"`, default) | the review, §4.6 (`decoding="review"`) |
# |---|---|---|
# | sampling | categorical at temperature 1 | softmax(logits / τ_t), τ_t = max(τ_min, τ0·α^t) |
# | confidence | p of the sampled code, untempered | p of the sampled code under the τ_t distribution |
# | which to keep | the most confident after Gumbel noise τ_c·(1 − t/T) on log p (τ_c = 4.5) | the most confident, no noise ("top-p" in the review's words) |
# | how many to keep | the cosine schedule γ | the cosine schedule γ |
#
# Sources: Chang et al. §3.2 and the reference code, `maskgit/libml/parallel_decode.py` of
# google-research/maskgit (`sample_choice_temperature = 4.5` in its class-conditional config).
#
# The tokenizer is frozen: MaskGIT models *its* tokens. The transformer used here is either the
# bundled checkpoint (if present; see its model card) or one trained for a few seconds in this notebook —
# then its samples are **untrained-quality**: what matters is the mechanics, not the pictures.

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.6 trình bày MaskGIT: một transformer hai chiều sinh lưới token ảnh bằng cách đoán nhiều token
# bị che cùng lúc trong vài vòng, thay vì từng token một. Notebook giải thích lịch che cosin, chạy
# giải mã song song từng bước đúng như bài báo, và dùng cùng cơ chế đó để phục
# dựng vùng bị che (như khi có khách đứng chắn trước tranh). Cách giải mã mặc định là của bài báo (lấy
# mẫu ở nhiệt độ 1, nhiễu Gumbel khi chọn token che lại); lịch $\tau_t$ của bài tổng quan không phải của
# MaskGIT và được giữ lại để so sánh trên các lưới token chưa thấy khi huấn luyện. Anh chị sẽ kéo thanh
# trượt, so MaskGIT với một mô hình tự hồi quy cùng kích thước về số lượt tính, số bit trên token và
# PSNR. Mô hình ở đây nhỏ và được huấn luyện trên CPU: hãy chú ý cơ chế, đừng đánh giá vẻ đẹp của ảnh.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | MaskGIT | MaskGIT (masked generative image transformer) | — |
# | transformer | transformer | — |
# | token che | mask token | `[MASK]` |
# | lịch che | mask schedule | $\gamma(r) = \cos(\pi r / 2)$ |
# | giải mã song song lặp | iterative parallel decoding | $T$ |
# | độ tin cậy | confidence | — |
# | nhiễu Gumbel | Gumbel noise | $g = -\log(-\log U)$ |
# | nhiệt độ chọn | choice temperature | $\tau_c$ |
# | transformer hai chiều | bidirectional transformer | — |
# | phục dựng vùng bị che | inpainting | — |
# | tự hồi quy | autoregressive (AR) | $p(z) = \prod_i p(z_i \mid z_{<i})$ |
# | thứ tự quét mành | raster order | — |
# | ép buộc bởi giáo viên | teacher forcing | — |
# | quy tắc dây chuyền | chain rule (of probability) | $p(z) = \prod_i p(z_i \mid z_{<i})$ |
# | độ hợp lý | likelihood | $p(x)$ |
# | bit trên token | bits per token | $R$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math
import time

import plotly.graph_objects as go
import torch
from ipywidgets import Dropdown, FloatSlider, IntSlider

from museumtok import registry
from museumtok.data.dataset import eval_batch
from museumtok.models.maskgit import (PAPER_CHOICE_TEMPERATURE, MaskGIT, MaskGITConfig, choice_noise_scale,
                                      cosine_schedule, masked_counts, random_mask, temperature_at)
from museumtok.paths import fast_mode
from museumtok.viz import image_row_figure, interact_or_call, partial_tokens_image

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. The mask schedule
#
# Training masks ⌈γ(r)·N⌉ tokens with r ~ U(0, 1); decoding with T steps leaves ⌊γ((t+1)/T)·N⌋ masked
# after step t — few tokens are fixed early (when the model knows least) and many late.

# %%
r = torch.linspace(0, 1, 101)
N, T = 256, 8
counts = masked_counts(N, T)
fig = go.Figure([go.Scatter(x=r, y=cosine_schedule(r), name="γ(r) = cos(πr/2)"),
                 go.Scatter(x=[(t + 1) / T for t in range(T)], y=[c / N for c in counts], mode="markers+lines",
                            name=f"masked fraction after each of T={T} steps (N={N})")])
fig.update_layout(xaxis_title="r", yaxis_title="masked fraction", height=320, margin={"t": 30})
assert cosine_schedule(0.0) == 1.0 and abs(cosine_schedule(1.0)) < 1e-12 and counts[-1] == 0
assert counts == [math.floor(math.cos(math.pi / 2 * (t + 1) / T) * N + 1e-9) for t in range(T)]
m = random_mask(2000, N, torch.Generator().manual_seed(0))
print(f"mean masked fraction in training: {m.float().mean():.3f} (E[cos(πr/2)] = 2/π = {2 / math.pi:.3f})")
assert abs(m.float().mean().item() - 2 / math.pi) < 0.01
print("tokens still masked after each step:", counts)
print(f"paper: sampling temperature 1 at every step; choice-noise weight τ_c·(1 − (t+1)/T), τ_c = {PAPER_CHOICE_TEMPERATURE}:",
      [round(choice_noise_scale(t, T), 3) for t in range(T)])
print("review (not MaskGIT's): sampling temperatures τ_t = max(0.1, 0.9^t):", [round(temperature_at(t), 3) for t in range(T)])
assert choice_noise_scale(T - 1, T) == 0.0                    # the last step keeps the sampler's own ranking
fig

# %% [markdown]
# ## 2. Tokens, and a transformer over them
#
# 64 px crops → 8×8 = 64 tokens of `vqvae-f8-k1024` (the bundled MaskGIT; 16×16 when trained here in full mode). If it is missing we train a
# small one here for a few seconds (fast mode) or a couple of minutes: **its samples are untrained-quality**.

# %%
ae = registry.load("vqvae-f8-k1024").model                    # the VQ-VAE inside the frozen tokenizer
MG, AR = "maskgit-vqvae-f8-k1024-g8", "ar-vqvae-f8-k1024-g8"   # registry generators (`museumtok list`)
if registry.get(MG).available:
    model = registry.load(MG)
    grid = model.config.grid[0]
    print("loaded", MG)
else:
    from museumtok.train.autoencoder import batch_for_step, train_images
    from museumtok.train.maskgit import token_bank

    grid = 8 if FAST else 16
    images, _ = train_images(max_side=256 if FAST else 768)
    bank = token_bank(ae, images, 64 if FAST else 1024, grid * 8, 3.0, seed=0)
    model = MaskGIT(MaskGITConfig(codebook_size=1024, grid=(grid, grid), dim=64, depth=2, heads=4))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    t0, steps = time.time(), 20 if FAST else 300
    for step in range(steps):
        loss = model.loss(bank[torch.randint(len(bank), (16,), generator=g)], g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    print(f"no bundled MaskGIT: trained a tiny one ({grid}×{grid} grid) for {steps} steps in {time.time() - t0:.0f} s, "
          f"last loss {loss.item():.2f} nats (log K = {math.log(1024):.2f}) — UNTRAINED-QUALITY samples below")

S = grid * 8
img, _ = eval_batch("artworks-test", S, limit=1)
k = ae.encode_indices(img)[0]                                 # (grid, grid) tokens of a held-out artwork
print("token grid", tuple(k.shape))

# %% [markdown]
# ## 3. Decoding step by step
#
# Start from an all-[MASK] grid; after each step grey patches are still masked. Every step is one
# forward pass of the transformer. This is the paper's decoder (`decode`'s default, `decoding="paper"`).

# %%
history = []
model.forward_passes = 0
out = model.decode(torch.full((1, grid, grid), model.mask_id), steps=T, history=history,
                   generator=torch.Generator().manual_seed(0))
assert model.forward_passes == T and (out < 1024).all()
left = [int((h < 0).sum()) for h in history]
assert left == masked_counts(grid * grid, T)
panels = [(f"step {t + 1}: {n} masked", partial_tokens_image(ae.decode_indices, h.view(grid, grid), 8))
          for t, (h, n) in enumerate(zip(history, left))]
image_row_figure(panels[:: 2 if T > 4 else 1], height=200)

# %% [markdown]
# ## 4. Inpainting: a visitor in front of the painting
#
# The box (in token units) is masked and regenerated; every token outside it is kept — checked by the
# assert. Sliders: box position/size, steps T, the decoding (the paper's or the review's) and, for the
# review's schedule only, its initial temperature τ0.

# %%
@interact_or_call(top=IntSlider(grid // 4, 0, grid - 1), left=IntSlider(grid // 4, 0, grid - 1),
                  size=IntSlider(grid // 2, 1, grid), steps=IntSlider(8, 1, 16),
                  decoding=Dropdown(options=["paper", "review"], value="paper"),
                  tau0=FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1))
def inpaint(top=grid // 4, left=grid // 4, size=grid // 2, steps=8, decoding="paper", tau0=1.0):
    box = (top, left, size, size)
    kw = {"tau0": tau0} if decoding == "review" else {}      # τ0 belongs to the review's schedule
    filled = model.inpaint(k[None], box, steps=steps, decoding=decoding, generator=torch.Generator().manual_seed(0),
                           **kw)[0]
    inside = torch.zeros(grid, grid, dtype=torch.bool)
    inside[top:top + size, left:left + size] = True
    assert torch.equal(filled[~inside], k[~inside])            # outside the box: unchanged
    masked = torch.where(inside, torch.full_like(k, -1), k)
    return image_row_figure([("original", img[0]), ("tokens (vqvae)", ae.decode_indices(k[None])[0]),
                             ("masked box", partial_tokens_image(ae.decode_indices, masked, 8)),
                             (f"inpainted, T={steps}, " + (f"review τ0={tau0}" if decoding == "review" else "paper"),
                              ae.decode_indices(filled[None])[0])], height=230)


# %%
inpaint(top=1, left=2, size=max(1, grid // 4), steps=4, decoding="review", tau0=2.0)   # other values (asserts inside)


# %% [markdown]
# ## 5. Against left-to-right autoregressive decoding
#
# The causal variant of the same transformer (same parameter count) needs one forward pass per token.
# `benchmarks/maskgit_vs_ar.py` times both on a 16×16 grid; here we count passes.

# %%
ar = MaskGIT(MaskGITConfig(**{**model.config.__dict__, "causal": True}))
assert sum(p.numel() for p in ar.parameters()) == sum(p.numel() for p in model.parameters())
ar.forward_passes = model.forward_passes = 0
t0 = time.perf_counter()
ar.generate_autoregressive(1)
t_ar = time.perf_counter() - t0
t0 = time.perf_counter()
model.decode(torch.full((1, grid, grid), model.mask_id), steps=T)
t_mg = time.perf_counter() - t0
print(f"autoregressive: {ar.forward_passes} passes, {t_ar:.2f} s;  MaskGIT T={T}: {model.forward_passes} passes, "
      f"{t_mg:.2f} s;  ratio {ar.forward_passes / model.forward_passes:.0f}× passes, {t_ar / t_mg:.1f}× time")
assert ar.forward_passes == grid * grid and model.forward_passes == T

# %% [markdown]
# ## 6. Quality: MaskGIT against a trained autoregressive prior
#
# Speed is half the story. `ar-vqvae-f8-k1024-g8` is the causal twin of the bundled MaskGIT, trained with
# the same command, data, batch and 10-minute cap (see both model cards). On held-out 64 px crops
# (`museumtok.eval.generative`):
#
# - **likelihood** in bits/token: the AR prior's is exact by the chain rule (one teacher-forced pass).
#   MaskGIT's conditionals give a proper likelihood when the true tokens are revealed one at a time —
#   raster order (64 passes for an 8×8 grid) or its own confidence order — and, revealed in the T groups
#   of its cosine schedule, the likelihood of the T-pass parallel sampler itself (tokens in a group
#   independent): the price of parallel decoding, in bits;
# - **inpainting** the centre 4×4 tokens: MaskGIT sees the context on all sides; the AR prior only the
#   tokens *before* each masked one in raster order. PSNR inside the box, against the original and
#   against the tokenizer's own reconstruction, and the fraction of tokens recovered exactly. The first
#   MaskGIT row is the review's τ_t (the decoder the model cards were first measured with; the paired Δ
#   is to it), the second the paper's decoding.
#
# Fast mode uses one Kodak image (9 crops), workshop mode 4 images per set; the cards' tables (and
# `benchmarks/maskgit_vs_ar_quality.py`) use every held-out image.

# %%
from IPython.display import Markdown, display

from museumtok.eval.generative import ComparisonConfig, compare, held_out_crops, markdown

if registry.get(AR).available and registry.get(MG).available:
    ar_trained = registry.load(AR)
    # workshop: 4 images per set (36 crops each) keeps this cell near a minute; the cards' tables use every image
    cfg = ComparisonConfig(sets=("kodak",) if FAST else ("artworks-test", "kodak"), limit=1 if FAST else 4)
    t0 = time.time()
    res = compare(model, ar_trained, ae, cfg)
    print(f"{time.time() - t0:.0f} s")
    # the AR chain rule is the teacher-forced cross-entropy of its training loss
    lp = ar_trained.chain_rule_log_probs(k[None])                         # (1, N) log p(k_i | k_<i)
    assert abs(-lp.mean().item() - ar_trained.loss(k[None])["loss"].item()) < 1e-4
    display(Markdown(markdown(res, cfg)))
else:
    ar_trained = None
    print("the bundled MaskGIT and AR checkpoints are needed for this comparison; skipped")

# %% [markdown]
# One held-out crop, its centre box filled by each decoder (grey = the masked box):

# %%
if ar_trained is not None:
    x1 = held_out_crops("kodak", cfg.size, cfg.crop, limit=1)[4:5]       # the centre tile of the first Kodak image
    k1 = ae.encode_indices(x1)                                            # (1, 8, 8)
    box = cfg.box
    fills = {"MaskGIT T=8, paper": model.inpaint(k1, box, steps=8, generator=torch.Generator().manual_seed(0)),
             "MaskGIT T=8, review τ_t": model.inpaint(k1, box, steps=8, decoding="review",
                                                     generator=torch.Generator().manual_seed(0)),
             "AR raster, τ=1": ar_trained.inpaint(k1, box, temperature=1.0, generator=torch.Generator().manual_seed(0)),
             "AR raster, greedy": ar_trained.inpaint(k1, box, greedy=True)}
    masked1 = k1[0].clone()
    masked1[box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = -1
    panels = [("original", x1[0]), ("tokens (vqvae)", ae.decode_indices(k1)[0]),
              ("masked box", partial_tokens_image(ae.decode_indices, masked1, 8))]
    panels += [(name, ae.decode_indices(f)[0]) for name, f in fills.items()]
    fig = image_row_figure(panels, height=220)
else:
    fig = None
fig

# %% [markdown]
# ## 7. The paper's decoding against the review's, on held-out grids
#
# The same transformer, the same held-out token grids, the same seeds — only the decoder changes:
#
# - **paper** (Chang et al. 2022, the default): sample at τ = 1, rank by the untempered probability,
#   Gumbel choice noise 4.5·(1 − t/T) on the ranking;
# - **review** (§4.6, not MaskGIT's): sample from softmax(logits/τ_t), τ_t = max(0.1, 0.9^t) (1 → 0.48 over
#   8 steps), rank by that tempered probability, no noise.
#
# `museumtok.eval.generative.compare_decodings` fills the centre box of every grid with several seeds
# and reports the model's own likelihood of what was filled in (bits/token of the box given the rest —
# the first row gives it for the true tokens), PSNR inside the box, and **diversity**: how often two seeds
# disagree on a token. The last two columns do the same for whole grids generated from all-[MASK].

# %%
from museumtok.eval.generative import compare_decodings
from museumtok.cards import markdown_table

crop = grid * 8
# fast mode: one Kodak image (9 crops), 2 seeds; workshop: 2 artworks (18 crops), 4 seeds — about half a minute
xd = held_out_crops("kodak" if FAST else "artworks-test", 3 * crop, crop, limit=1 if FAST else 2)
kd = ae.encode_indices(xd)                                              # (n, grid, grid) held-out tokens
box_d = (grid // 4, grid // 4, grid // 2, grid // 2)
t0 = time.time()
dec_rows = compare_decodings(model, ae, xd, kd, box_d, steps=T, seeds=2 if FAST else 4, samples=2 if FAST else 4)
print(f"{len(kd)} held-out grids, box {box_d}, {time.time() - t0:.0f} s")
display(Markdown(markdown_table(dec_rows)))
assert [r["decoding"].split()[0] for r in dec_rows] == ["true", "paper", "review"]

# %% [markdown]
# The same crop, its box filled by each decoding with three seeds (grey = the masked box):

# %%
x1d, k1d = xd[:1], kd[:1]
masked_d = k1d[0].clone()
masked_d[box_d[0]:box_d[0] + box_d[2], box_d[1]:box_d[1] + box_d[3]] = -1
panels = [("original", x1d[0]), ("masked box", partial_tokens_image(ae.decode_indices, masked_d, 8))]
for dec in ("paper", "review"):
    for sd in range(3):
        f_ = model.inpaint(k1d, box_d, steps=T, decoding=dec, generator=torch.Generator().manual_seed(sd))
        panels.append((f"{dec}, seed {sd}", ae.decode_indices(f_)[0]))
image_row_figure(panels, height=200)

# %% [markdown]
# **Reading.** A colder sampler gives more likely but less varied tokens. Both decoders fill the box with
# tokens the model finds more likely than the true ones (keeping the most confident tokens is itself a
# pull towards likely codes), but the review's τ_t, below 1 from the second step on, goes much further:
# about 1.5–2.5 fewer bits per token in the box and about half the bits for whole generated grids, and two seeds
# agree on noticeably more tokens. The paper samples the model as trained (τ = 1) and puts its randomness
# into *which* tokens to keep early, letting that noise fade so the last steps keep the confident ones:
# its fills are nearly as varied as independent draws. PSNR inside the hole rewards neither reliably —
# with a 1 M-parameter transformer both are ~8 dB below the tokenizer's own reconstruction (first row) and
# the sign of their difference changes with the crops. The numbers depend on the checkpoint (bundled, or
# trained here in seconds): read the columns side by side, not against the paper's ImageNet results.

# %% [markdown]
# **Takeaways.** MaskGIT replaces N sequential predictions by T ≪ N rounds of parallel ones; the cosine
# schedule decides how many tokens each round fixes. Because the transformer is bidirectional,
# inpainting is just decoding with some tokens given. The published decoder samples at temperature 1 and
# randomises the choice of tokens to keep; the review's τ_t schedule is a different, colder sampler
# (section 7). Quality needs a well-trained transformer — the
# one here is tiny and CPU-trained, so judge the mechanics, not the pictures (errata `s2-maskgit-steps`:
# the paper's 256² images take 8 iterations, not 512 steps). Against an AR prior of the same size and
# training budget, section 6 measures what the T-step parallel factorization costs in bits and what
# seeing both sides of the hole buys in inpainting.
