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
# # 2 · The literature, checked (§2 and §14 of the review)
#
# **What you will learn**
#
# - which works the review builds on, when they appeared, and how many tokens each one spends on an
#   image — on an interactive map you can filter by method family;
# - where the review's facts differ from the papers themselves: authors, venues, years, arXiv ids,
#   reported numbers and arithmetic — the *errata*;
# - how each arithmetic claim is recomputed, so that a number in this notebook is never taken on
#   trust.
#
# Everything shown comes from two files in the repository, read through the package:
# `data/literature.csv` (one row per work, corrected) and `data/errata.csv` (one row per correction,
# with its primary source). `docs/errata.md` is generated from the second by `museumtok errata --write`.
# Every fact was checked against the paper's arXiv page, its proceedings page or the authors' own
# repository; where a fact could not be confirmed the row says **unverified**.

# %% [markdown]
# ## Tóm tắt
#
# Chương 2 của bài tổng quan là bảng mốc thời gian 13 công trình (2017–2024) về nén ảnh thành token và
# đưa token vào LLM. Notebook đặt các công trình này lên một bản đồ tương tác: năm công bố, số token
# cho mỗi ảnh và họ phương pháp, với số liệu đã đối chiếu lại với bài báo gốc. Anh chị sẽ xem bảng
# đính chính — những chỗ bài tổng quan ghi khác bài báo (tác giả, nơi công bố, năm, mã arXiv, số liệu,
# phép tính) — lọc theo loại lỗi, và xem từng phép tính được tính lại. Kết luận chính: xu hướng không
# phải là "ngày càng ít token"; các mô hình mở năm 2024 dùng nhiều token hơn để đọc được tài liệu và
# biểu đồ.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | đính chính | errata (erratum) | — |
# | nguồn sơ cấp | primary source | — |
# | chưa xác minh | unverified | — |
# | họ phương pháp | method family | — |
# | nơi công bố | venue | — |
# | mã arXiv | arXiv identifier | — |
# | mô hình thị giác–ngôn ngữ | vision–language model (VLM) | — |
# | codec nơ-ron | neural (learned) codec | — |
# | tỉ số nén | compression ratio | — |
# | nạp trước | prefill | — |
# | số tham số | number of parameters | $N$ |
# | chiều khoá–giá trị | key/value width | $d_{kv}$ |
# | chiều tầng MLP | MLP (feed-forward) width | $d_{ff}$ |
# | thông lượng | throughput | FLOP/s |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

from IPython.display import HTML, Markdown, display
from ipywidgets import Checkbox, Dropdown, SelectMultiple, interact

from museumtok import literature as lit
from museumtok.llm.budget import ContextBudget, text_tokens_from_words
from museumtok.metrics import perplexity
from museumtok.paths import fast_mode
from museumtok.viz import errata_arithmetic_figure, timeline_figure

FAST = fast_mode()  # nothing here is slow; the flag is read for uniformity with the other notebooks

works = lit.load_literature()
errata = lit.load_errata()
assert lit.validate_literature(works) == [] and lit.validate_errata(errata, works) == []
print(f"{len(works)} works, {len(errata)} errata "
      f"({sum(e.unverified for e in errata)} with a part that could not be confirmed)")

# %% [markdown]
# ## 1. The map: tokens per image over time
#
# The review's §2 (*Timeline literature 2017 – 2024*) is a table of 13 works. Here each work is a
# point: the **year** it first appeared (x), how many **tokens** it turns one image into (y, log
# scale), and its **method family** (colour):
#
# - **VQ / dVAE / GAN-VQ** learn a codebook and replace each image patch by the index of its nearest
#   code word (VQ-VAE, DALL·E's dVAE, VQ-GAN);
# - **masked-token** models generate those indices in parallel (MaskGIT);
# - **resampler/adapter** models compress an image into a few continuous vectors with learned
#   queries (Perceiver, Flamingo);
# - **VLM**s (vision–language models) feed such vectors to a large language model (PaLM-E,
#   Idefics2, InternVL);
# - **neural codecs** spend *bits*, not tokens (HiFiC, Entroformer), so they are listed below the map
#   rather than on it.
#
# Filled markers are checked against the paper. Open markers are what the review claims, joined to
# the checked value by a dotted line where they differ. Hover over a point for the title, the venue,
# the arXiv id, how the token count arises, and what the review says next to what the paper says.

# %%
def show_map(families=tuple(lit.FAMILIES), review_claims=True):
    fig = timeline_figure(works, families=families, show_review=review_claims)
    fig.show()
    return fig


fig = show_map()  # run once directly, so an error fails the notebook instead of hiding in the widget
assert {t for tr in fig.data if tr.name in lit.FAMILIES for t in tr.text} == {w.key for w in works if w.tokens}

interact(show_map,
         families=SelectMultiple(options=lit.FAMILIES, value=tuple(lit.FAMILIES), rows=6, description="families"),
         review_claims=Checkbox(value=True, description="show the review's claims"));

# %%
show_map(families=tuple(lit.FAMILIES)[:2], review_claims=False)      # the callback once more, with other values

# %% [markdown]
# The review reads a trend into its table: *"VQ-VAE (1024 token) → VQ-GAN (256) → PaLM-E (16)"*,
# fewer and fewer tokens per image. Checked against the papers the picture changes: Flamingo uses
# **64** tokens per image, not 16; PaLM-E's count could not be confirmed at all; and the open models
# of 2024 spend **more** tokens, not fewer — Idefics2 64 to 320, InternVL 1.5 256 per 448×448 tile
# (up to 40 tiles), LLaVA-NeXT up to 2880. The real trend is a trade: a few tokens for cheap
# captioning, many for reading documents and charts.

# %%
tokens = {w.key: w.tokens for w in works}
assert tokens["vqvae"] == 32 * 32 and tokens["vqgan"] == (256 // 16) ** 2    # 1024 → 256, as the review says
assert tokens["flamingo"] == 64 and tokens["palme"] is None                    # not 16; unverified
assert tokens["llava-next"] > tokens["internvl15"] > tokens["idefics2"] > 16   # 2024 models spend more

without = [w for w in works if not w.tokens]
display(HTML("<b>Works not on the map</b> (no single verified count of image tokens):"
             + lit.html_table([{"work": w.title, "family": w.family, "year": w.year, "why": w.tokens_setting or w.family,
                                "notes": w.notes} for w in without])))

# %% [markdown]
# ## 2. What the review says, what the paper says
#
# One row per work. *review's year* is filled only where the review's year is neither the year the
# work first appeared nor its venue's year.

# %%
def show_works(which="§2 table only"):
    corrected = {k for x in errata for k in x.works}
    ws = {"§2 table only": [w for w in works if w.role == "timeline"],
          "with an erratum": [w for w in works if w.key in corrected],
          "all": works}[which]
    display(HTML(lit.html_table(lit.comparison_rows(ws))))
    return ws


shown = show_works()
assert len(shown) == 14  # §2's 13 rows, with HiFiC and Entroformer (two papers the review merges) apart
interact(show_works, which=Dropdown(options=["§2 table only", "with an erratum", "all"], description="rows"));

# %%
show_works(which="with an erratum")      # the callback once more, with other values

# %% [markdown]
# ## 3. The errata
#
# Each row: the review's section, what it says (quoted in Vietnamese where the review is), the
# correct fact, the kind of slip and the primary source. Choose a kind to narrow the table. The
# same table is `docs/errata.md`.

# %%
def show_errata(kind="all"):
    rows = errata if kind == "all" else [x for x in errata if kind in x.kinds]
    display(Markdown(lit.errata_table_markdown(rows)))
    return rows


counts = {k: sum(k in e.kinds for e in errata) for k in lit.KINDS}
print("errata by kind:", counts)
assert show_errata("arithmetic") and all("arithmetic" in e.kinds for e in show_errata("arithmetic"))
interact(show_errata, kind=Dropdown(options=["all", *lit.KINDS], value="venue", description="kind"));

# %%
show_errata(kind="all")      # the callback once more, with other values

# %% [markdown]
# The citation slips cluster in the newest works: every 2023–2024 row of §2's table carries at least
# one erratum (PaLM-E's venue; Kosmos-2's authors; MAGVIT-v2's title, id and first author; IDEFICS-2's
# title, id and architecture; InternVL 1.5's authors, title and venue), and two references — §14 [19]
# "Token Shuffle for Event-based Video, ECCV 2022" and [20] ChartBench — point to papers with other
# authors, titles or ids.

# %%
e = {x.id: x for x in errata}
recent = [w.key for w in works if w.role == "timeline" and w.year >= 2023]
assert sorted(recent) == ["idefics2", "internvl15", "kosmos2", "magvit2", "palme"]
assert all(any(k in x.works and set(x.kinds) & {"author", "venue", "arxiv"} for x in errata) for k in recent)
assert {"author", "arxiv"} <= set(e["s14-20-chartbench"].kinds)

# %% [markdown]
# ## 4. The arithmetic, recomputed
#
# ### §6.2: how long does the LLM take to read the prompt?
#
# The review estimates the attention cost of one layer of Llama 3 70B ($d = 8192$ hidden size) on a
# prompt of $n = M + L = 256 + 1200 = 1456$ tokens on an A100 (312·10¹² FLOP/s at best):
#
# $$ T_\text{attn} \approx \frac{4\,d\,n^2}{\text{FLOP/s}} = \frac{4 \cdot 8192 \cdot 1456^2}{3.12\times 10^{14}} \approx 0.22\ \text{ms per layer.} $$
#
# That step is right. But $4dn^2$ counts only the two $n\times n$ products $QK^\top$ and $AV$. Reading
# the prompt also sends every token through every weight matrix — 2 FLOPs per weight per token
# (Kaplan et al. 2020) — and for a 70-billion-parameter model that dominates:
#
# $$ T_\text{prefill} \approx \frac{2\,N\,n + 80 \cdot 4\,d\,n^2}{\text{FLOP/s}}, \qquad N = 80\,(2d^2 + 2\,d\,d_{kv} + 3\,d\,d_{ff}) $$
#
# with $d_{kv} = 1024$ (8 key/value heads of 128) and $d_{ff} = 28672$ from the model's configuration.

# %%
d, layers, n, peak, d_kv, d_ff = 8192, 80, 256 + 1200, 312e12, 1024, 28672
per_layer_ms = 4 * d * n**2 / peak * 1e3
N = layers * (2 * d * d + 2 * d * d_kv + 3 * d * d_ff)
prefill_ms = lambda m: (2 * N * (m + 1200) + layers * 4 * d * (m + 1200) ** 2) / peak * 1e3  # noqa: E731

print(f"attention per layer {per_layer_ms:.4f} ms, × 80 layers = {layers * per_layer_ms:.2f} ms (review: 17.6)")
print(f"MLP / attention-score cost per layer: {2 * 3 * d * d_ff / (4 * d * n):.1f} (review: ≈ 2)")
print(f"non-embedding weights N = {N / 1e9:.2f} B; whole prefill {prefill_ms(256):.0f} ms at peak (review: ~52 ms)")
print(f"M = 64: attention alone {layers * 4 * d * 1264**2 / peak * 1e3:.1f} ms (review: 13 ms); "
      f"whole prefill {prefill_ms(64):.0f} ms, {1 - prefill_ms(64) / prefill_ms(256):.0%} less")

# the same numbers, from the errata rows (museumtok.literature recomputes their check expressions)
for i, mine in (("s6-2-layers", layers * per_layer_ms), ("s6-2-total", prefill_ms(256)), ("s6-2-m64", prefill_ms(64))):
    c = e[i].check()
    assert c.agrees and c.refutes_review and math.isclose(c.value, mine, rel_tol=1e-9), i
assert abs(per_layer_ms - 0.22) < 0.005          # the review's per-layer figure is right …
assert lit.rounds_to(e["s6-2-mlp"].check().value, "29.5")  # … the rest is not

# %% [markdown]
# ### Every numeric claim at once
#
# Each bar pair is one erratum with a number: red what the review prints, green what the check
# expression in `data/errata.csv` evaluates to (hover for the expression).

# %%
checks = [(x, x.check()) for x in errata if x.check_expr]
assert all(c.agrees and c.refutes_review for _, c in checks)
errata_arithmetic_figure(errata).show()

# %% [markdown]
# ### §2 and §4.3: VQ-VAE's compression and codebook perplexity
#
# The review credits VQ-VAE with "compression 32×". The paper compresses a 128×128 RGB image
# (8 bits per value) into a 32×32 grid of indices into $K = 512$ codes (9 bits each):
#
# $$ \frac{128 \cdot 128 \cdot 3 \cdot 8}{32 \cdot 32 \cdot 9} \approx 42.7 $$
#
# §4.3 prints the codebook perplexity as $\exp\big(\tfrac1N\sum_i \log K - H(k_i)\big)$. The
# standard definition, which the review itself uses in §3.3, is
# $\exp H(\hat p) = \exp\big(-\sum_k \hat p_k \log \hat p_k\big)$: $K$ when all codes are used equally,
# 1 when a single code is used. The §4.3 form equals $K / \exp H$, the other way round.

# %%
import torch  # noqa: E402

assert math.isclose(128 * 128 * 3 * 8 / (32 * 32 * math.log2(512)), 42.67, abs_tol=0.01)
K = 512
for name, idx in (("uniform use", torch.arange(K).repeat(8)), ("one code only", torch.zeros(8 * K, dtype=torch.long))):
    ppl = perplexity(idx, K)  # museumtok.metrics: exp(H(p̂))
    review_form = math.exp(math.log(K) - math.log(ppl))  # exp(log K − H)
    print(f"{name:14s} perplexity {ppl:6.1f}   §4.3 formula {review_form:6.1f}")
assert perplexity(torch.arange(K), K) == K and math.isclose(math.exp(math.log(K) - math.log(K)), 1.0)

# %% [markdown]
# ### §4.7: tokens per second of video
#
# §4.7 pictures a video tokenizer with 16×16 tokens per latent frame and 4× temporal compression,
# and concludes that 30 frames/s "needs 512 tokens/s". With its own numbers:
# $30 / 4 \times 256 = 1920$ tokens per second — almost four times more: two seconds of video
# nearly fill a 4k context, three overflow it.

# %%
assert 30 / 4 * 16 * 16 == 1920 == float(e["s4-7-rate"].check_value)
second = lambda s: ContextBudget(context=4096, images=s, M=1920, delimiters=0)  # noqa: E731  s seconds of video
assert second(2).free == 256 and not second(3).fits  # two seconds nearly fill a 4k context, three overflow it

# %% [markdown]
# ### Chapter 1: the question the review leaves open
#
# Chapter 1 asks whether 10 images of 256 tokens and 1.5k words of description fit a 4k context.
# The review never answers; with `museumtok.llm.ContextBudget` (two delimiter tokens per image,
# ≈ 1.33 tokens per English word) they do not:

# %%
b = ContextBudget(context=4096, images=10, M=256, text_tokens=text_tokens_from_words(1500))
print(b.summary())
assert b.image_tokens == 10 * (256 + 2) and b.text_tokens == round(1500 * 1.33) and not b.fits

# %% [markdown]
# ## 5. Keeping the record
#
# - To correct another fact, add a row to `data/errata.csv` (with its primary source URL, and a
#   `check_expr` if it is arithmetic), then run `museumtok errata --write` to regenerate
#   `docs/errata.md`; the tests fail while the two disagree.
# - Rows written by hand into another branch's `docs/errata.md` are folded into the CSV with
#   `museumtok errata --import path/to/errata.md`.
