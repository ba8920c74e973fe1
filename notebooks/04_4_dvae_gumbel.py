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
# # 4.4 · dVAE: choosing a code by sampling (Gumbel-softmax)
#
# **What you will learn**
#
# - the Gumbel-max trick: argmax(ℓ + g) with Gumbel noise g is an exact sample of softmax(ℓ);
# - the Gumbel-softmax relaxation (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017) and its
#   temperature τ, annealed during training as in DALL·E's dVAE (Ramesh et al., *Zero-Shot
#   Text-to-Image Generation*, ICML 2021, arXiv:2102.12092) — slider and schedules;
# - **soft** against **hard** (straight-through) samples: same gradient, different forward pass — and,
#   trained side by side from the same seed, what each does to the codebook (usage, perplexity, PSNR);
#   soft is the default, as DALL·E's dVAE trains on the relaxed sample;
# - the **KL term** to the uniform prior and what it does to code usage during a short training run;
# - the bundled `dvae-f8-k1024` tokenizer next to `vqvae-f8-k1024`.
#
# ```
# x ─Encoder─▶ h ─1×1 conv─▶ logits ℓ (K per position) ─softmax((ℓ+g)/τ)─▶ w ─Σ_k w_k e_k─▶ z_q ─Decoder─▶ x̂
#                                       └─ argmax ℓ ─▶ k   (the token at inference)
# ```

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.4 nói về dVAE của DALL·E: thay vì tìm mã gần nhất, bộ mã hoá *lấy mẫu* một mã nhờ nhiễu
# Gumbel. Notebook đếm trên nhiều lần rút để kiểm tra rằng mẹo Gumbel-max cho đúng phân phối softmax,
# rồi cho anh chị kéo nhiệt độ $\tau$ để thấy mẫu chuyển từ một hỗn hợp mềm sang một lựa chọn one-hot,
# và xem các lịch ủ nhiệt độ. Anh chị sẽ so mẫu mềm với mẫu cứng, hiểu số hạng KL tới phân phối tiên
# nghiệm đều, xem trọng số KL ảnh hưởng tới việc dùng mã trong một lần huấn luyện ngắn, huấn luyện hai
# bản mềm và cứng từ cùng một hạt giống để so mức dùng bảng mã, độ bối rối và PSNR, rồi đặt bộ token
# hoá `dvae-f8-k1024` cạnh `vqvae-f8-k1024`.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | VAE rời rạc | discrete VAE (dVAE) | — |
# | nhiễu Gumbel | Gumbel noise | $g = -\log(-\log U)$ |
# | mẹo Gumbel-max | Gumbel-max trick | — |
# | logit | logits | $\ell$ |
# | softmax | softmax | — |
# | nhiệt độ | temperature | $\tau$ |
# | ủ nhiệt độ | temperature annealing | $\tau$: 1 → 1/16 |
# | mẫu mềm | soft sample | $w$ |
# | mẫu cứng | hard sample (straight-through Gumbel) | — |
# | vectơ one-hot | one-hot vector | — |
# | phân kỳ Kullback–Leibler | Kullback–Leibler divergence (KL) | $\mathrm{KL}(q \,\Vert\, p)$ |
# | phân phối đều | uniform distribution | $\mathcal{U}$, $p = 1/K$ |
# | phân phối tiên nghiệm | prior (distribution) | $p(z)$ |
# | phân phối hậu nghiệm | posterior (distribution) | $q(z \mid x)$ |
# | trọng số KL | KL weight | $\lambda_{\text{KL}}$ |
# | độ bối rối | perplexity | $2^{H}$ |
# | mã chết | dead code | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from ipywidgets import FloatLogSlider, interact
from plotly.subplots import make_subplots

from museumtok import registry
from museumtok.data.dataset import eval_batch
from museumtok.eval.metrics import image_metrics
from museumtok.metrics import code_counts, codebook_stats
from museumtok.models import DVAE, DVAEConfig
from museumtok.paths import fast_mode
from museumtok.quantize.gumbel import GumbelQuantizer, gumbel_softmax, kl_to_uniform, sample_gumbel, tau_schedule

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. The Gumbel-max trick
#
# With g_k = −log(−log U_k), U_k ~ Uniform(0, 1), the index argmax_k (ℓ_k + g_k) is distributed
# exactly as softmax(ℓ). Count it over many draws:

# %%
logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
n = 20_000 if FAST else 200_000
g = sample_gumbel((n, len(logits)), generator=torch.Generator().manual_seed(0))
freq = torch.bincount((logits + g).argmax(1), minlength=len(logits)).double() / n
p = F.softmax(logits.double(), 0)
print("empirical", [round(v, 3) for v in freq.tolist()])
print("softmax  ", [round(v, 3) for v in p.tolist()])
assert (freq - p).abs().max() < 4 * math.sqrt(0.25 / n), "Gumbel-max samples follow softmax(ℓ) (4σ bound)"

# %% [markdown]
# ## 2. Temperature τ: from a soft mixture to a one-hot choice
#
# The relaxation replaces the argmax by softmax((ℓ + g)/τ). Large τ gives a blurred mixture of
# codes; τ → 0 gives a one-hot vector. Move τ (same noise g each time):

# %%
g1 = sample_gumbel((1, len(logits)), generator=torch.Generator().manual_seed(2))


def soft_sample(tau: float) -> torch.Tensor:
    return gumbel_softmax(logits[None], tau, hard=False, dim=1, g=g1)[0]


def show_tau(tau=1.0):
    w = soft_sample(tau)
    h = float(-(w * w.clamp_min(1e-12).log()).sum())
    return go.Figure(go.Bar(x=[f"code {k}" for k in range(len(w))], y=w.tolist())).update_layout(
        title=f"τ = {tau:.3g}: soft sample, entropy {h:.2f} nats (one-hot: 0, uniform: {math.log(len(w)):.2f})",
        yaxis={"range": [0, 1]}, height=300)


interact(show_tau, tau=FloatLogSlider(value=1.0, base=10, min=-2, max=1, step=0.05));

# %%
show_tau(0.2)      # the callback once more, with other values

# %%
for tau in (10.0, 1.0, 0.1, 0.01):
    w = soft_sample(tau)
    assert torch.allclose(w.sum(), torch.tensor(1.0)), "a soft sample is a probability vector"
assert soft_sample(0.01).max() > 0.99 and int(soft_sample(0.01).argmax()) == int((logits + g1[0]).argmax()), \
    "as τ → 0 the sample tends to the one-hot of argmax(ℓ + g)"

# %% [markdown]
# **Annealing.** DALL·E started at τ = 1 and annealed to 1/16 (cosine schedule); `museumtok train
# dvae` uses a geometric one over the first 75 % of the steps by default. The three curves of
# `museumtok.quantize.gumbel.tau_schedule`:

# %%
T = 1000
fig = go.Figure()
for kind in ("exponential", "cosine", "linear"):
    fig.add_trace(go.Scatter(x=list(range(0, T + 1, 10)), y=[tau_schedule(s, 1.0, 1 / 16, T, kind) for s in range(0, T + 1, 10)],
                             name=kind))
fig.update_layout(xaxis_title="step", yaxis_title="τ", yaxis_type="log", height=300)
fig

# %%
for kind in ("exponential", "cosine", "linear"):
    assert tau_schedule(0, 1.0, 1 / 16, T, kind) == 1.0 and math.isclose(tau_schedule(T, 1.0, 1 / 16, T, kind), 1 / 16)
assert math.isclose(tau_schedule(T // 2, 1.0, 1 / 16, T, "exponential"), 0.25), "geometric: √(1 · 1/16) halfway"

# %% [markdown]
# ## 3. Soft against hard (straight-through)
#
# The hard sample is the exact one-hot of the soft sample's argmax in the forward pass, but carries
# the soft sample's gradient: one_hot + w − sg[w]. So the decoder sees a single code (as at
# inference), while the encoder still gets a gradient through every logit.

# %%
ell = logits.clone()[None].requires_grad_(True)
e = torch.randn(len(logits), 3, generator=torch.Generator().manual_seed(1))    # 6 codes of dimension 3
target = torch.randn(3, generator=torch.Generator().manual_seed(2))
grads, outs = {}, {}
for hard in (False, True):
    w = gumbel_softmax(ell, 0.5, hard=hard, dim=1, g=g1)
    z_q = w @ e
    ((z_q - target) ** 2).sum().backward()
    grads[hard], outs[hard] = ell.grad.clone(), w.detach()[0]
    ell.grad = None
print("soft w:", [round(v, 3) for v in outs[False].tolist()])
print("hard w:", outs[True].tolist())
assert set(outs[True].tolist()) <= {0.0, 1.0} and outs[True].sum() == 1, "hard: exactly one-hot"
assert int(outs[True].argmax()) == int(outs[False].argmax())
# same upstream gradient shape: the chain rule through w − sg[w] is the soft Jacobian (evaluated at a different z_q)
w_soft = gumbel_softmax(logits[None], 0.5, hard=False, dim=1, g=g1)[0]
J = (torch.diag(w_soft) - torch.outer(w_soft, w_soft)) / 0.5                    # ∂w/∂ℓ of softmax((ℓ+g)/τ)
dz = 2 * (outs[True] @ e - target)                                             # ∂L/∂z_q at the hard forward value
assert torch.allclose(grads[True][0], J @ (e @ dz), atol=1e-5), "straight-through gradient = soft Jacobian"

# %% [markdown]
# ## 4. The KL term
#
# The dVAE's evidence lower bound includes KL(q(k | x) ‖ p(k)) with a uniform prior p = 1/K:
#
# $$\mathrm{KL}(q \,\|\, \mathcal U_K) = \sum_k q_k \log (K q_k) = \log K - H(q),$$
#
# zero when the encoder is maximally unsure and log K when it is certain. Weighted by λ_KL it
# pushes towards spread-out logits (and so towards using many codes); too large a weight and the
# encoder cannot commit to any code.

# %%
K = 16
q_logits = torch.randn(2, K, 3, 3, generator=torch.Generator().manual_seed(4))
q = F.softmax(q_logits, 1)
by_hand = (q * torch.log(K * q)).sum(1).mean()
via_torch = torch.distributions.kl_divergence(
    torch.distributions.Categorical(probs=q.permute(0, 2, 3, 1)),
    torch.distributions.Categorical(probs=torch.full((K,), 1.0 / K))).mean()
entropy = -(q * q.log()).sum(1).mean()
assert torch.allclose(kl_to_uniform(q_logits), by_hand) and torch.allclose(by_hand, via_torch, atol=1e-6)
assert torch.allclose(by_hand, math.log(K) - entropy, atol=1e-6)
assert float(kl_to_uniform(torch.zeros(1, K, 1, 1))) == 0.0
print(f"KL = {by_hand:.4f} nats = log K − H(q) = {math.log(K):.4f} − {entropy:.4f}")

gq = GumbelQuantizer(in_channels=4, codebook_size=K, dim=2, kl_weight=0.1)
out = gq(torch.randn(2, 4, 3, 3))
assert torch.allclose(out.loss, 0.1 * out.losses["kl"]), "the quantizer's loss is λ_KL · KL"

# %% [markdown]
# ## 5. A short training run: τ, the KL term and code usage
#
# A small dVAE on 32 px crops of the training artworks through the package's training loop, with τ
# annealed 1 → 1/16 and soft samples (the trainer's defaults), once with the default KL weight
# (3·10⁻⁴ against a per-pixel mean squared error) and once with a large one (0.1).

# %%
import tempfile
from pathlib import Path

from museumtok.train.autoencoder import RunLog, fit, train_images
from museumtok.train.dvae import DVAETrainConfig, tau_at

images, _ = train_images(max_side=256)
steps = 30 if FAST else 400
curves = {}
for kl_weight in (3e-4, 0.1):
    cfg = DVAETrainConfig(f=4, channels=(16, 32, 32), codebook_size=128, dim=8, steps=steps, batch_size=8, crop=32,
                          warmup=5, lr=2e-3, log_every=2 if FAST else 10, eval_every=10**9, save_every=10**9,
                          max_minutes=0, kl_weight=kl_weight, resume=False)
    torch.manual_seed(0)
    model = DVAE(cfg.model)

    def schedule(m, step, cfg=cfg):
        m.tau = tau_at(step, cfg.steps, cfg.tau_start, cfg.tau_end, cfg.tau_anneal, cfg.tau_kind)
        return {"tau": m.tau}

    run = Path(tempfile.mkdtemp()) / f"kl{kl_weight}"
    fit(model, cfg, images, run, on_step=schedule, progress=False)
    curves[kl_weight] = RunLog(run).rows("train")

fig = make_subplots(rows=1, cols=3, subplot_titles=("τ", "KL(q ‖ uniform), nats", "batch perplexity (of K=128)"))
for kl_weight, rows in curves.items():
    s = [int(r["step"]) for r in rows]
    name = f"λ_KL = {kl_weight:g}"
    for j, key in enumerate(("tau", "kl", "perplexity")):
        fig.add_trace(go.Scatter(x=s, y=[float(r[key]) for r in rows], name=name, legendgroup=name,
                                 showlegend=j == 0), 1, j + 1)
fig.update_layout(height=320)
fig

# %%
rows = curves[3e-4]
assert all(0 <= float(r["kl"]) <= math.log(128) + 1e-6 for r in rows), "0 ≤ KL ≤ log K"
assert float(rows[0]["tau"]) > float(rows[-1]["tau"]), "τ is annealed"

# %% [markdown]
# ## 6. Soft or straight-through: what each does to the codebook
#
# DALL·E's dVAE trains on the relaxed sample (soft, `hard=False`, the default here); the straight-through
# variant (`hard=True`) sends the one-hot of the sample forward and the soft gradient back (section 3).
# `museumtok.train.dvae.compare_relaxations` trains the same small dVAE both ways — same seed, same
# crops, same steps, same τ schedule — and measures on held-out artworks (`artworks-val`, 64 px → 256
# tokens each): the PSNR of the **argmax tokens** (what the tokenizer emits), codebook **usage**,
# **perplexity** and **dead codes**; and the PSNR of the **training-time sample** at the final τ ("relaxed"),
# what the decoder saw while it learned. Twice: with τ annealed 1 → 1/16 (the trainer's default, as
# DALL·E) and with τ held at 1, where the two forward passes differ most.

# %%
import time

from IPython.display import Markdown, display

from museumtok.cards import markdown_table
from museumtok.train.dvae import compare_relaxations

x_val, _ = eval_batch("artworks-val", 64, limit=4 if FAST else 8)       # held out: 8 × 256 tokens
steps_r = 30 if FAST else 200                                        # 4 runs: ~½ minute on a CPU
results, t0 = {}, time.time()
for label, tau_end in (("τ 1 → 1/16", 1 / 16), ("τ = 1", 1.0)):
    cfg = DVAETrainConfig(f=4, channels=(16, 32, 32), codebook_size=128, dim=8, steps=steps_r, batch_size=8,
                          crop=32, warmup=5, lr=2e-3, log_every=2 if FAST else 10, eval_every=max(1, steps_r // 5),
                          save_every=10**9, max_minutes=0, tau_end=tau_end)
    results[label] = compare_relaxations(cfg, images, x_val, Path(tempfile.mkdtemp()))
print(f"4 runs of {steps_r} steps in {time.time() - t0:.0f} s")
table = []
for label, res in results.items():
    for variant, r in res.items():
        f_ = r["final"]
        table.append({"τ schedule": label, "trained on": variant, "PSNR of the tokens (dB)": f"{f_['psnr']:.2f}",
                      "PSNR relaxed (dB)": f"{r['relaxed_psnr']:.2f}",
                      "gap (dB)": f"{r['relaxed_psnr'] - f_['psnr']:+.2f}", "codes used": f"{f_['usage']:.0%}",
                      "perplexity (of 128)": f"{f_['perplexity']:.1f}", "dead codes": f_["dead_codes"]})
display(Markdown(markdown_table(table)))

# %%
fig = make_subplots(rows=1, cols=2, subplot_titles=("held-out PSNR of the tokens (dB)", "held-out perplexity (of K=128)"))
for label, res in results.items():
    for variant, r in res.items():
        name = f"{variant}, {label}"
        s_ = [int(e["step"]) for e in r["eval"]]
        for j, key in enumerate(("psnr", "perplexity")):
            fig.add_trace(go.Scatter(x=s_, y=[float(e[key]) for e in r["eval"]], name=name, legendgroup=name,
                                     showlegend=j == 0, line={"dash": "solid" if variant == "soft" else "dot"}), 1, j + 1)
fig.update_layout(height=320, xaxis_title="step", xaxis2_title="step")
fig

# %%
for res in results.values():
    soft, st = res["soft"], res["straight-through"]
    assert [r["step"] for r in soft["train"]] == [r["step"] for r in st["train"]], "same steps for both"
    assert soft["model"].config.hard is False and st["model"].config.hard is True
    for r in (soft, st):
        assert 0 < r["final"]["usage"] <= 1 and 1 <= r["final"]["perplexity"] <= 128
        assert math.isfinite(r["final"]["psnr"]) and math.isfinite(r["relaxed_psnr"])

# %% [markdown]
# **Reading.** With τ held at 1 the soft decoder learns from *mixtures* of codes, which carry more than
# the log₂ K bits of one token: it reconstructs well from the relaxed sample but clearly worse from the
# argmax tokens it will actually get (a gap of about 4 dB in the runs here), while the straight-through
# decoder only ever saw single codes: a gap of about 1 dB, and its tokens decode better than the soft ones.
# Annealing τ towards 1/16 makes the soft sample nearly one-hot by the end and closes most of the gap:
# with the trainer's schedule the two variants end within a few tenths of a dB of each other, with similar
# perplexity, and soft is what DALL·E trained with (its gradients are lower-variance early on). Usage and
# perplexity move little, and not always the same way, in a few hundred steps; the gap between the two
# PSNR columns is the point.

# %% [markdown]
# ## 7. The bundled dVAE next to the VQ-VAE
#
# Both tokenizers share the encoder/decoder architecture and were trained on the same crops for a
# similar time (see their model cards). One Kodak image at M = 256 tokens (128 px):

# %%
names = [n for n in ("vqvae-f8-k1024", "dvae-f8-k1024") if n in registry.names("tokenizer")]
kodak, _ = eval_batch("kodak", 128, limit=2 if FAST else None)
panels = [("original", kodak[0])]
for name in names:
    tok = registry.load(name)
    k = tok.encode_tensor(kodak, 256)
    x_hat = tok.decode_indices(k, 256)
    st = codebook_stats(code_counts(k, tok.K), tok.K, counts=True)
    psnr = float(image_metrics(kodak, x_hat, with_lpips=False)["psnr"].mean())
    panels.append((f"{name}: {psnr:.1f} dB, ppl {st.perplexity:.0f}", x_hat[0]))
if not names:
    print("no bundled vqvae/dvae checkpoints here: train them with `python -m museumtok train vqvae` / `dvae`")
fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
for j, (_, im) in enumerate(panels):
    fig.add_trace(go.Image(z=(im.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()), 1, j + 1)
fig.update_xaxes(visible=False)
fig.update_yaxes(visible=False)
fig.update_layout(height=300, margin={"l": 0, "r": 0, "t": 30, "b": 0})
fig

# %% [markdown]
# **Takeaways.** Gumbel noise turns "pick the best code" into "sample a code", which the softmax
# relaxation makes differentiable; τ trades a faithful forward pass (small τ, hard samples) against
# low-variance gradients (large τ, soft samples), hence the annealing. The KL term to a uniform
# prior is log K − H(q): it rewards uncertainty, which spreads usage over the codebook but fights
# the reconstruction when it is weighted too heavily.
