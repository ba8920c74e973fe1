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
# # 9 · Evaluation: one table, and why artworks fail (§9 of the review)
#
# §9 of the review asks for three things: quantitative metrics (§9.1: bpp and bits per token for
# the context cost; PSNR, SSIM, LPIPS for fidelity; encode time for latency), benchmarks (§9.2:
# Kodak for compression) and an error-analysis procedure (§9.3): *replay the thought chain*,
# *compare patches* (decode tokens back to patches and look for lost colour or pattern), *measure
# CLIPScore*, and *check entropy* (a few codes used too often means codebook collapse).
#
# **What you will do**
#
# 1. read the one table `python -m museumtok bench` writes (every tokenizer and codec of the
#    registry, on Kodak and the held-out artworks), and check its numbers;
# 2. decode tokens back to the patches they stand for (§9.3 step 2);
# 3. check codebook entropy and perplexity for collapse (§9.3 step 4);
# 4. rank the test artworks by PSNR and explain the worst with measurable image statistics;
# 5. compute FID, KID and CLIPScore (§9.1, §9.3 step 3) where their weights are on the machine, and
#    otherwise see the same code run on a stand-in feature network.
#
# Step 1 of §9.3 (the `[THOUGHT]`/`[CITE]` replay) needs the chat model and lives in the case
# study (notebook 11). FID/KID and CLIPScore need published weights (the Inception of FID, a CLIP
# model) that this offline project does not ship: `museumtok weights add` brings them, and then this
# notebook and `museumtok bench` report them; until then they say "n/a: needs <file>".

# %% [markdown]
# ## Tóm tắt
#
# Chương 9 bàn về đánh giá: thước đo, bộ dữ liệu chuẩn và quy trình phân tích lỗi. Notebook đọc bảng
# đánh giá chung do `make bench` tạo (mọi bộ token hoá và codec trên bộ ảnh Kodak và các tác phẩm giữ
# lại) và kiểm tra lại các con số trong đó. Anh chị sẽ giải mã token về mảnh ảnh để xem mỗi token biểu
# diễn được gì và mất gì, kiểm tra entropy và độ bối rối để phát hiện sụp đổ bảng mã, rồi xếp hạng các
# tác phẩm theo PSNR và giải thích những bức khó nhất bằng các thống kê đo được như năng lượng tần số
# cao và mật độ cạnh. Cuối cùng là FID, KID và điểm CLIP: máy có trọng số Inception hay CLIP thì đo
# thật, máy ngoại tuyến thì báo thiếu tệp nào và chạy cùng công thức trên một mạng đặc trưng thay thế.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | bảng đánh giá chung | benchmark table (bench) | — |
# | phân tích lỗi | error analysis | — |
# | sai số theo token | per-token error | — |
# | bản đồ nhiệt | heat map | — |
# | trường tiếp nhận | receptive field | — |
# | kiểm tra sụp đổ | collapse check | — |
# | năng lượng tần số cao | high-frequency energy | — |
# | tần số Nyquist | Nyquist frequency | — |
# | mật độ cạnh | edge density | — |
# | độ rực màu | colourfulness | — |
# | độ tương phản độ chói | luminance contrast | — |
# | hệ số tương quan hạng Spearman | Spearman rank correlation | $\rho$ |
# | điểm chuẩn hoá | z-score | $z_k$ |
# | khoảng cách Fréchet Inception | Fréchet Inception distance (FID) | — |
# | khoảng cách Inception nhân | kernel Inception distance (KID) | — |
# | điểm CLIP | CLIPScore | — |
# | độ lệch trung bình cực đại | maximum mean discrepancy (MMD) | $\mathrm{MMD}^2$ |
# | mạng đặc trưng thay thế | stand-in feature network | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import json
import math

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display
from ipywidgets import Dropdown, IntSlider
from PIL import Image, ImageDraw
from scipy.stats import entropy as scipy_entropy
from scipy.stats import spearmanr
from skimage.color import rgb2gray
from skimage.filters import sobel
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio

from museumtok import registry
from museumtok.data.catalog import named_set
from museumtok.data.dataset import eval_batch
from museumtok.data.images import load_image, tensor_to_pil
from museumtok.eval import bench, bench_report, errors
from museumtok.eval.metrics import evaluate_tokenizer
from museumtok.metrics import code_counts, codebook_stats, mse, psnr
from museumtok.metrics.content import edge_density, hf_energy, image_statistics, sobel_magnitude, spearman
from museumtok.paths import fast_mode
from museumtok.viz import error_map, interact_or_call, token_grid_figure

FAST = fast_mode()
torch.set_num_threads(1)

# %% [markdown]
# ## 1. The bench table
#
# `python -m museumtok bench` (or `make bench`) walks the registry: every tokenizer at each M it
# offers, every codec at the bits those tokenizers spend on the same crop (and over a quality
# sweep), on Kodak (24 photographs) and the 15 held-out artworks. It writes `docs/bench/bench.json`,
# `bench.md` and `bench_rd.{html,png}`, and it is resumable: a row is recomputed only when the
# checkpoint, the images or the setting changed. Here we read the committed result; without it the
# notebook runs the bench in fast mode (2 images per set).

# %%
committed = bench.DEFAULT_OUT / bench_report.JSON_NAME
if committed.is_file():
    doc = json.loads(committed.read_text())
    print(f"read {committed.relative_to(bench.DEFAULT_OUT.parents[1])}: {len(doc['rows'])} rows, "
          f"generated {doc['generated']} by `{doc['command']}`")
else:
    res = bench.run_bench(fast=True, progress=False)
    doc = json.loads(res.json_path.read_text())
    print(f"ran the bench in fast mode: {len(doc['rows'])} rows in {res.wall_s:.1f} s -> {res.out}")
md = bench_report.render_markdown(doc)
display(Markdown(md[md.index("## "):md.index("## Codec quality sweeps")] if "## Codec quality sweeps" in md else md))

# %%
bench_report.rd_figure(doc)

# %% [markdown]
# The widgets below are `ipywidgets.interact` in JupyterLab; under `MUSEUMTOK_FAST=1` (the tests)
# `interact_or_call` runs each function once with the widgets' first values instead.

# %%
METRICS = {"PSNR (dB)": "psnr", "SSIM": "ssim", "MS-SSIM": "ms_ssim", "encode ms": "encode_ms", "decode ms": "decode_ms"}


@interact_or_call(set_name=Dropdown(options=doc["sets"]), metric=Dropdown(options=list(METRICS)))
def metric_against_bits(set_name, metric):
    # any metric of the table against bits per pixel: tokenizers, and codecs at token budgets
    key = METRICS[metric]
    fig = go.Figure()
    for name in sorted({r["name"] for r in doc["rows"]}):
        rs = [r for r in bench_report.table_rows(doc, set_name) if r["name"] == name and r.get(key) is not None]
        if rs:
            fig.add_trace(go.Scatter(x=[r["bpp"] for r in rs], y=[r[key] for r in rs], mode="markers", name=name,
                                     text=[f"{r['setting']}, S={r['size']}" for r in rs], marker={"size": 10}))
    fig.update_layout(title=f"{set_name}: {metric} against bits per pixel", xaxis_title="bits per pixel",
                      yaxis_title=metric, height=400, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(type="log")
    return fig


# %%
metric_against_bits(doc["sets"][-1], list(METRICS)[-1])      # the callback once more, with other values

# %% [markdown]
# §9.1's "rate (bits/token)" is log2 K for fixed-length indices (bits raw / M), less when a
# tokenizer entropy-codes its indices (bits coded / M).
#
# **Checks on the table.** A tokenizer's raw bits are M·log2 K (fixed-length indices); bpp is the
# bits over the S×S working image; perplexity 2^H can never exceed the number of codes used
# (H ≤ log2 of the support); a codec row that fits its budget spends at most those bits. And one row
# is recomputed from scratch with `evaluate_tokenizer` — when its checkpoint is the one the table
# was made with (the row's fingerprint), the numbers must agree.

# %%
tok_rows = [r for r in doc["rows"] if r["kind"] == "tokenizer"]
for r in tok_rows:
    assert math.isclose(r["bits_raw"], r["M"] * math.log2(r["K"])), r["key"]
    assert math.isclose(r["bpp"], r["bits"] / r["size"] ** 2)
    assert r["perplexity"] <= r["usage"] * r["K"] + 1e-6
for r in doc["rows"]:
    if r.get("setting_kind") == "budget":
        assert all((p["bits"] <= r["budget_bits"]) for p in r["per_image"]) == (r["fits"] == r["images"])

row = min(tok_rows, key=lambda r: (r["size"], r["images"]))
job = bench.Job(row["name"], "tokenizer", row["set"], row["size"], "tokens", M=row["M"])
if registry.get(row["name"]).available and bench.fingerprint(job, doc["limit"]) == row["fingerprint"]:
    again = evaluate_tokenizer(registry.load(row["name"]), row["set"], row["M"], limit=doc["limit"])
    assert math.isclose(again["psnr"], row["psnr"], rel_tol=1e-6) and math.isclose(again["perplexity"], row["perplexity"])
    print(f"{row['key']}: recomputed PSNR {again['psnr']:.3f} dB = table {row['psnr']:.3f} dB")
else:
    print(f"{row['key']} is stale (checkpoint changed since the table was made): run `make bench`")

# %% [markdown]
# ## 2. Decode tokens back to patches (§9.3 step 2)
#
# A token is an index into a codebook; decoding it gives the patch the tokenizer *thinks* was there.
# We pick the tokenizer with the best held-out PSNR in the table among those with a grid of
# patches, encode one test artwork and look at a token: where it sits in the original (its box),
# the pixels it covers, and what it decodes to.

# %%
tokenizers = registry.names("tokenizer")
best = max((r for r in tok_rows if r["set"] == "artworks-test" and r["name"] in tokenizers),
           key=lambda r: (r["M"] == registry.get(r["name"]).default_M, r["psnr"]), default=None)
TOK = best["name"] if best else tokenizers[0]
tok = registry.load(TOK)
M = registry.get(TOK).default_M
test_entries = named_set("artworks-test")
entry = test_entries[0]
original = load_image(entry.find()).image
t = tok.encode(original, M=M)
x = t.working.x                                   # (3, S, S) the crop the tokenizer saw
x_hat = tok.decode(t)                             # (3, S, S)
print(f"{TOK} at M={M}: {entry.title} ({entry.artist}), working size {t.working_size} px, "
      f"{t.M} tokens of {math.log2(t.K):.0f} bits = {t.bits_raw:.0f} bits")
token_grid_figure(t, title=f"{TOK}: token ids of '{entry.title}' (hover: patch box in the original)")

# %% [markdown]
# Per-token error: the MSE of each token's patch. For equal patches the mean of the per-token MSE
# is the image's MSE (checked against the package and scikit-image), so the heat map shows *where*
# the PSNR is lost.

# %%
if t.indices.ndim == 2:
    per_mse = errors.token_patch_mse(x, x_hat, t.grid_shape)                       # (h, w)
    x8 = (x_hat * 255).round() / 255
    assert math.isclose(float(per_mse.mean()), float(mse(x, x_hat)), rel_tol=1e-6)
    assert math.isclose(float(per_mse.mean()), mean_squared_error(x.double().numpy(), x_hat.double().numpy()), rel_tol=1e-6)
    assert math.isclose(float(psnr(x, x8)), peak_signal_noise_ratio(x.numpy(), x8.numpy(), data_range=1.0), rel_tol=1e-5)
    per_psnr = 10 * torch.log10(1 / per_mse.clamp_min(1e-10))
    fig = go.Figure(go.Heatmap(z=per_psnr.numpy(), colorscale="RdYlGn", colorbar={"title": "dB"}))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(title=f"PSNR of each token's patch (image: {float(psnr(x, x8)):.2f} dB)", height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    display(fig)
    display(error_map(x, x_hat).resize((256, 256), Image.NEAREST))

# %%
boxes_w = tok.token_boxes(tuple(t.indices.shape), t.working_size).round().long()   # (M, 4) working pixels


@interact_or_call(position=IntSlider(value=int(torch.argmax(errors.token_patch_mse(x, x_hat, t.grid_shape)).item())
                             if t.indices.ndim == 2 else 0, min=0, max=t.M - 1))
def show_token(position):
    # the token's box on the original, its working patch and its decoded patch (enlarged)
    bx = [int(v) for v in t.boxes[position]]
    thumb = original.copy()
    ImageDraw.Draw(thumb).rectangle(bx, outline=(255, 0, 0), width=max(2, original.width // 150))
    thumb.thumbnail((320, 320))
    x0, y0, x1, y1 = boxes_w[position].tolist()
    p, q = x[:, y0:y1, x0:x1], x_hat[:, y0:y1, x0:x1]
    big = tensor_to_pil(torch.cat([p, torch.ones(3, p.shape[1], 1), q], 2)).resize((8 * (2 * p.shape[2] + 1), 8 * p.shape[1]), Image.NEAREST)
    print(f"position {position}: token <v{int(t.flat()[position])}>, box in the original {bx}; "
          f"patch PSNR {float(psnr(p, q)):.2f} dB (left: the pixels, right: what the token decodes to)")
    display(thumb, big)


# %%
show_token(0)      # the callback once more, with other values

# %% [markdown]
# Does a token decode to *its* patch only? For a patch codebook yes: each index is replaced by its
# codeword. A convolutional decoder (VQ-VAE) mixes each token with its neighbours, so the patch a
# token "stands for" is blurred over its receptive field. `museumtok.eval.errors.token_influence` changes one token
# and measures where the decoded image changes.

# %%
pos = int(t.M // 2 + (t.grid_shape[-1] // 2 if t.indices.ndim == 2 else 0))
change, outside = errors.token_influence(tok, t.indices, M, pos)
print(f"{TOK}: changing token {pos} changes the image over {int((change > 1e-6).sum())} pixels; "
      f"{100 * outside:.1f}% of the change lies outside the token's {t.working_size // (t.grid_shape[-1] if t.indices.ndim == 2 else 1)} px box")
fig = go.Figure(go.Heatmap(z=change.numpy(), colorscale="Magma", colorbar={"title": "|Δx|"}))
fig.update_yaxes(autorange="reversed", scaleanchor="x")
fig.update_layout(title=f"where token {pos} acts in the decoded image", height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
fig

# %% [markdown]
# Which patches does one token stand for? Gather, over the test artworks, every patch coded with
# this image's most frequent code. With a local decoder every one of them decodes to the same
# codeword, whatever the pixels were; the spread between them is what the token cannot express
# (colour shifts, textures and edges averaged away). With a convolutional decoder the decoded
# patches differ, because the neighbours contribute.

# %%
xs_test, _ = eval_batch("artworks-test", t.working_size, 6 if FAST else None)
counts_img = code_counts(t.flat(), t.K)
code = int(counts_img.argmax())
orig_p, dec_p = errors.code_patches(tok, xs_test, M, code, max_n=24)
print(f"code <v{code}>: {int(counts_img[code])} of {t.M} tokens in this image; {len(orig_p)} patches shown "
      f"from {len(xs_test)} test artworks (top row: pixels, bottom row: decoded)")
if len(orig_p):
    same = torch.allclose(dec_p, dec_p[:1].expand_as(dec_p), atol=1e-6)
    assert same == (outside == 0.0) or len(orig_p) == 1   # one codeword exactly when the decoder is local
    row_o = torch.cat([torch.nn.functional.pad(p, (1, 1, 1, 1), value=1) for p in orig_p], 2)
    row_d = torch.cat([torch.nn.functional.pad(p, (1, 1, 1, 1), value=1) for p in dec_p], 2)
    strip = tensor_to_pil(torch.cat([row_o, row_d], 1))
    display(strip.resize((strip.width * 4, strip.height * 4), Image.NEAREST))
    spread = float((orig_p - orig_p.mean(0)).pow(2).mean())
    print(f"mean squared spread of the pixels around their mean: {spread:.4f}; of the decoded patches: "
          f"{float((dec_p - dec_p.mean(0)).pow(2).mean()):.4f}; MSE decoded vs pixels: {float((orig_p - dec_p).pow(2).mean()):.4f}")

# %% [markdown]
# ## 3. Entropy checks for collapse (§9.3 step 4)
#
# With p̂_k the frequency of code k over all tokens of the test artworks, H = −Σ p̂_k log2 p̂_k and
# perplexity = 2^H: K when every code is used equally, 1 when one code takes everything. The
# review's rule — "if a group of tokens appears too often, the codebook has collapsed" — becomes
# `museumtok.eval.errors.collapse_check`: the 10 most frequent codes take more than half the tokens, or perplexity
# is below 5% of K.

# %%
health = {}
for name in registry.names("tokenizer"):
    tk = registry.load(name)
    m = registry.get(name).default_M
    xb, _ = eval_batch("artworks-test", tk.working_size(m), 6 if FAST else None)
    with torch.no_grad():
        idx = tk.encode_tensor(xb, m).reshape(-1)
    health[name] = (idx, tk.K, errors.collapse_check(idx, tk.K))
display(Markdown("| tokenizer | K | tokens | codes used | usage | H bits (≤ log2 K) | perplexity | top-10 share | collapsed? |\n"
                 "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {n} | {c['K']} | {c['n']} | {c['used']} | {c['usage']:.3f} | {c['entropy_bits']:.2f} ({math.log2(c['K']):.0f}) | "
                     f"{c['perplexity']:.1f} | {c['top_share']:.3f} | {'**yes**' if c['collapsed'] else 'no'} |"
                     for n, (_, _, c) in health.items())))

for name, (idx, K, c) in health.items():
    counts = code_counts(idx, K).numpy()
    assert math.isclose(c["perplexity"], math.exp(scipy_entropy(counts)), rel_tol=1e-9)   # exp(H nats) = 2^(H bits)
    assert math.isclose(c["entropy_bits"], scipy_entropy(counts, base=2), rel_tol=1e-9)
    assert math.isclose(c["top_share"], np.sort(counts)[::-1][:10].sum() / counts.sum())
    assert c["entropy_bits"] <= math.log2(c["used"]) + 1e-9 and c["perplexity"] <= c["used"] + 1e-6


# %%
@interact_or_call(name=Dropdown(options=list(health)))
def code_frequencies(name):
    idx, K, c = health[name]
    f = np.sort(code_counts(idx, K).numpy())[::-1] / c["n"]
    fig = go.Figure(go.Bar(y=f, marker_color="#1f77b4", name="frequency"))
    fig.add_hline(y=1 / K, line_dash="dash", annotation_text="uniform 1/K")
    fig.update_layout(title=f"{name}: code frequencies, most used first (perplexity {c['perplexity']:.1f} of K={K})",
                      xaxis_title="code rank", yaxis_title="share of tokens", yaxis_type="log", height=360,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# %%
code_frequencies(list(health)[-1])      # the callback once more, with other values

# %% [markdown]
# Does the check catch a real collapse? Take the chosen tokenizer, push all but 4 codewords far
# away (as dead codes do after a bad initialisation) and encode the same images: the check must say
# *collapsed*, and PSNR drops.

# %%
if isinstance(getattr(tok, "codebook", None), torch.Tensor) and registry.get(TOK).checkpoint:
    broken = type(tok).from_pretrained(str(registry.get(TOK).checkpoint_path))
    if broken.codebook.ndim == 2:
        with torch.no_grad():
            broken.codebook[4:] += 10.0
            xb, _ = eval_batch("artworks-test", tok.working_size(M), 6 if FAST else None)
            idx_b = broken.encode_tensor(xb, M)
        cb = errors.collapse_check(idx_b, broken.K)
        ok = errors.collapse_check(tok.encode_tensor(xb, M), tok.K)
        print(f"healthy: perplexity {ok['perplexity']:.1f}, collapsed={ok['collapsed']}; "
              f"broken: perplexity {cb['perplexity']:.2f}, top-10 share {cb['top_share']:.2f}, collapsed={cb['collapsed']}")
        assert cb["collapsed"] and not ok["collapsed"] and cb["used"] <= 4

# %% [markdown]
# ## 4. Which artworks fail, and why
#
# `museumtok.eval.errors.error_analysis` ranks the 15 held-out artworks by PSNR and measures, on the same crop the
# tokenizer saw, content statistics from `museumtok.metrics.content`: **high-frequency energy** (the
# share of luminance spectral energy above ¼ of Nyquist), **edge density** (share of pixels with a
# Sobel gradient above 0.05), **colourfulness** (Hasler & Süsstrunk 2003) and luminance contrast. The
# *reason* is the statistic on which an image stands furthest from the set's mean (in σ). A patch
# codebook has a fixed number of codewords; images full of fine detail need more than it has.
#
# The *reason* weighs each statistic k by its Spearman rank correlation ρ_k with PSNR over the set:
# score_k = −ρ_k·z_k (z_k: how many σ the image is from the set's mean). For an image in the worse
# half the reason is the statistic with the largest score (what makes it hard), for the better half
# the smallest (what makes it easy).

# %%
ranking = errors.error_analysis(TOK, "artworks-test", M)
display(Markdown(f"**{TOK}, M = {M}** (working size {tok.working_size(M)} px)\n\n"
                 "| rank | artwork | artist | PSNR dB | SSIM | HF energy | edge density | colourfulness | reason |\n"
                 "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {i + 1} | {r['title'][:40]} | {r['artist'][:24]} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['hf_energy']:.3f} | {r['edge_density']:.3f} | {r['colourfulness']:.1f} | {r['reason']} |"
                     for i, r in enumerate(ranking))))
rho_hf = spearmanr([r["psnr"] for r in ranking], [r["hf_energy"] for r in ranking])
rho_edge = spearmanr([r["psnr"] for r in ranking], [r["edge_density"] for r in ranking])
assert math.isclose(spearman([r["psnr"] for r in ranking], [r["edge_density"] for r in ranking]), rho_edge.statistic)
print(f"Spearman correlation of PSNR with HF energy: {rho_hf.statistic:+.2f} (p = {rho_hf.pvalue:.3f}); "
      f"with edge density: {rho_edge.statistic:+.2f} (p = {rho_edge.pvalue:.3f})")

# %% [markdown]
# Checks: the ranking's PSNR is the package's PSNR of that image's reconstruction; the statistics
# match reference implementations (NumPy's FFT for the spectrum, scikit-image's `sobel` and
# `rgb2gray` for edges).

# %%
xs_all, entries_all = eval_batch("artworks-test", tok.working_size(M), None)
worst = ranking[0]
xw = xs_all[worst["index"]][None]
with torch.no_grad():
    xw_hat = tok.decode_indices(tok.encode_tensor(xw, M), M)
assert math.isclose(float(psnr(xw, (xw_hat.clamp(0, 1) * 255).round() / 255)), worst["psnr"], rel_tol=1e-5)
hwc = xw[0].permute(1, 2, 0).double().numpy()
y = rgb2gray(hwc)
P = np.abs(np.fft.fft2(y - y.mean())) ** 2
fr = np.hypot(*np.meshgrid(np.fft.fftfreq(y.shape[0]), np.fft.fftfreq(y.shape[1]), indexing="ij"))
assert math.isclose(hf_energy(xw[0]), P[fr > 0.25 * 0.5].sum() / P.sum(), rel_tol=1e-9)
assert np.allclose(sobel_magnitude(xw[0]).numpy(), sobel(y))
assert math.isclose(edge_density(xw[0]), float((sobel(y) > 0.05).mean()))
rgb = hwc * 255
rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
assert math.isclose(worst["colourfulness"], math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()), rel_tol=1e-9)
assert image_statistics(xw[0])["hf_energy"] == worst["hf_energy"]


# %%
def thumbs(rows, title):
    """Original crop | reconstruction | error map, one line per artwork."""
    S = tok.working_size(M)
    lines = []
    for r in rows:
        xi = xs_all[r["index"]][None]
        with torch.no_grad():
            xi_hat = tok.decode_indices(tok.encode_tensor(xi, M), M).clamp(0, 1)
        strip = Image.new("RGB", (3 * S + 4, S), "white")
        strip.paste(tensor_to_pil(xi[0]), (0, 0))
        strip.paste(tensor_to_pil(xi_hat[0]), (S + 2, 0))
        strip.paste(error_map(xi[0], xi_hat[0]), (2 * S + 4, 0))
        lines.append(strip)
        print(f"{title}: {r['title'][:50]} — {r['psnr']:.2f} dB — {r['reason']}")
    sheet = Image.new("RGB", (3 * S + 4, len(lines) * (S + 2)), "white")
    for i, s in enumerate(lines):
        sheet.paste(s, (0, i * (S + 2)))
    return sheet.resize((sheet.width * 256 // S, sheet.height * 256 // S))


n_show = 2 if FAST else 3
display(thumbs(ranking[:n_show], "worst"))
display(thumbs(ranking[-n_show:][::-1], "best"))


# %%
@interact_or_call(stat=Dropdown(options=["hf_energy", "edge_density", "colourfulness", "luma_std"]))
def psnr_against(stat):
    fig = go.Figure(go.Scatter(x=[r[stat] for r in ranking], y=[r["psnr"] for r in ranking], mode="markers+text",
                               text=[r["title"][:18] for r in ranking], textposition="top center",
                               hovertext=[f"{r['title']}<br>{r['reason']}" for r in ranking], marker={"size": 10}))
    rho = spearmanr([r[stat] for r in ranking], [r["psnr"] for r in ranking]).statistic
    fig.update_layout(title=f"{TOK}, M={M}: PSNR against {stat} (Spearman ρ = {rho:+.2f})", xaxis_title=stat,
                      yaxis_title="PSNR (dB)", height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# %%
psnr_against("hf_energy")      # the callback once more, with other values

# %% [markdown]
# **Reading it.** A fixed-rate patch tokenizer spends the same bits on a flat sky and on a dense
# engraving, so the artworks with the most fine detail (high-frequency energy, many edges) come last;
# smooth, low-contrast works come first. That is the case for entropy-coded or adaptive token counts
# (more tokens where there is more to say), which the rate–distortion notebooks measure. Re-run
# `make bench` whenever a tokenizer lands; the table above and this ranking follow the registry.

# %% [markdown]
# ## 5. FID, KID and CLIPScore, where the weights are (§9.1, §9.3 step 3)
#
# **FID** (Heusel et al., NeurIPS 2017) fits a Gaussian N(μ, Σ) to the Inception features of each
# set and measures d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½). **KID** (Bińkowski et al., ICLR 2018) is
# the unbiased estimate of MMD² under the kernel k(x, y) = (xᵀy/d + 1)³: the mean kernel value within
# each set minus twice the mean across them. **CLIPScore** (Hessel et al., EMNLP 2021) is
# w·max(cos(E_image, E_text), 0) of CLIP embeddings; here the text is the artwork's title and artist,
# and w = 100 as in torchmetrics. The code (`museumtok.metrics.distribution`) takes any feature
# extractor; the real ones are built only from files already on the machine.

# %%
from museumtok.metrics import distribution as dm

status = dm.distribution_status()
for key, label in (("fid", "FID / KID"), ("clipscore", "CLIPScore")):
    st = status[key]
    print(f"{label}: {'available (' + st['reason'] + ')' if st['available'] else 'n/a: ' + st['reason']}")

# %% [markdown]
# Originals against reconstructions of the held-out artworks, for the tokenizer above at each M. On
# this offline machine the features come from a **stand-in**: a fixed random conv net, so the
# formulas run, but its numbers are not FIDs and compare only with each other. With fewer images
# than feature dimensions the Gaussian fit is rank-deficient and FID is biased upwards; KID is not.

# %%
features = dm.inception_features() if status["fid"]["available"] else dm.standin_features()
scorer = dm.clip_scorer() if status["clipscore"]["available"] else None
dist_rows = []
for m in tok.supported_M:
    xs, ents = eval_batch("artworks-test", tok.working_size(m), 6 if FAST else None)
    with torch.no_grad():
        xh = (tok.decode_indices(tok.encode_tensor(xs, m), m).clamp(0, 1) * 255).round() / 255
    d = dm.distribution_metrics(xs, xh, [dm.caption(e) for e in ents], features, scorer)
    dist_rows.append({"M": m, "S": tok.working_size(m), "images": len(xs), "psnr": float(psnr(xs, xh).mean()), **d})
feat_name = "Inception" if status["fid"]["available"] else "stand-in"
display(Markdown(f"**{TOK}**, features: {feat_name}\n\n| M | S px | images | PSNR dB | FID | KID ×10³ | CLIPScore |\n"
                 "|---|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {r['M']} | {r['S']} | {r['images']} | {r['psnr']:.2f} | {r['fid']:.4g} | {1e3 * r['kid']:.3g} | "
                     + (f"{r['clipscore']:.1f} (original {r['clipscore_original']:.1f})" if 'clipscore' in r else "n/a")
                     + " |" for r in dist_rows)))

# %% [markdown]
# Checks: a set against itself has FID 0; the small-sample route the package takes (the nuclear norm
# of A₁A₂ᵀ, O(N²D)) equals the textbook formula through the eigenvalues of Σ₁Σ₂ (O(D³)); the
# unbiased MMD² of two samples of one distribution averages to 0. A set against itself also shows
# why KID here is *paired*: each reconstruction x̂ᵢ belongs to one original xᵢ, and the pairs
# (xᵢ, x̂ᵢ) are closer than two different images. Counted in the cross term (as torchmetrics does for
# independent samples), they push the estimate below 0, to −(2/N)·(mean k(xᵢ, xᵢ) − mean k(xᵢ, xⱼ))
# for a perfect copy; left out (Gretton et al.'s MMD²ᵤ, JMLR 2012), a perfect copy scores exactly 0.

# %%
f_orig = features(xs)
f_rec = features(xh)
assert abs(dm.fid_from_features(f_orig, f_orig)) < 1e-6 * max(1.0, float(f_orig.square().sum()))
full = dm.frechet_distance(*dm.gaussian_fit(f_orig), *dm.gaussian_fit(f_rec))
scale = float(dm.gaussian_fit(f_orig)[1].trace() + dm.gaussian_fit(f_rec)[1].trace())   # √ of eigvals' rounding noise
assert math.isclose(dm.fid_from_features(f_orig, f_rec), full, abs_tol=1e-6 * scale)
assert dm.mmd2_unbiased(f_orig, f_orig, paired=True) == 0 and dm.mmd2_unbiased(f_orig, f_orig) < 0
g = torch.Generator().manual_seed(0)
null = [dm.mmd2_unbiased(torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g)) for _ in range(100)]
print(f"FID via the small matrices {dm.fid_from_features(f_orig, f_rec):.6g} = via eigvals(Σ₁Σ₂) {full:.6g}; "
      f"mean unbiased MMD² over 100 same-distribution pairs: {np.mean(null):+.2e} (± {np.std(null) / 10:.1e})")

