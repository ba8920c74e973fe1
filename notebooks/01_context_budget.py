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
# # 1 · The context budget (chapter 1 and §6.2 of the review)
#
# **The guide's question.** The GPU holds a 4k-token context. A visitor's question comes with
# **10 images of 256 tokens each** and **1.5k words** of description. Does it fit?
#
# **What you will learn**
#
# - how to count what an image costs an LLM: M tokens plus its `<image>` … `</image>` delimiters;
# - how words turn into tokens (about 1.33 BPE tokens per English word);
# - what to give up when it does not fit: fewer images, a smaller M, or less text — with sliders;
# - why fewer tokens also means a faster answer: attention cost grows with the *square* of the
#   sequence length (§6.2), checked here against PyTorch's own FLOP counter.
#
# Everything is computed by `museumtok.llm.budget.ContextBudget`, the same object the app's budget
# bar uses.

# %% [markdown]
# ## Tóm tắt
#
# Notebook này trả lời câu hỏi ở chương 1 của bài tổng quan: GPU chỉ chứa được ngữ cảnh 4k token, vậy
# 10 ảnh (mỗi ảnh 256 token) cùng 1500 từ mô tả có vừa không? Mỗi ảnh tốn $M$ token cộng hai dấu phân
# cách, mỗi từ tiếng Anh khoảng 1,33 token, nên tổng cộng là 4575 token — vượt cửa sổ 4096 token. Anh
# chị sẽ kéo các thanh trượt (số ảnh, $M$, số từ, kích thước ngữ cảnh, phần chừa cho câu trả lời) và
# xem thanh ngân sách chuyển sang đỏ khi bị tràn. Phần cuối dùng bộ đếm FLOP của PyTorch để kiểm tra
# rằng chi phí chú ý tăng theo bình phương độ dài chuỗi, và cho thấy giảm $M$ từ 256 xuống 64 chỉ bớt
# khoảng một phần tư chi phí này chứ không phải 4 lần.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | token | token | — |
# | token ảnh | image token | — |
# | số token ảnh | number of image tokens | $M$ |
# | số token văn bản | number of text tokens | $L$ |
# | mô hình ngôn ngữ lớn | large language model (LLM) | — |
# | cửa sổ ngữ cảnh | context window | — |
# | ngân sách ngữ cảnh | context budget | $\text{ảnh}\cdot(M+2) + \text{văn bản}$ |
# | dấu phân cách ảnh | image delimiters | `<image>`, `</image>` |
# | mã hoá cặp byte | byte-pair encoding (BPE) | — |
# | tự chú ý | self-attention | — |
# | độ dài chuỗi | sequence length | $n = M + L$ |
# | chiều nhúng của LLM | LLM embedding (hidden) dimension | $d$ |
# | phép toán dấu phẩy động | floating-point operation (FLOP) | FLOP |
# | chi phí chú ý bậc hai | quadratic attention cost | $4 d n^2$ |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import torch
from IPython.display import Markdown, display
from ipywidgets import IntSlider, interact

from museumtok.llm.budget import IMAGE_DELIMITERS, TOKENS_PER_WORD, ContextBudget, text_tokens_from_words
from museumtok.paths import fast_mode
from museumtok.viz import budget_figure, lines_figure

FAST = fast_mode()
torch.set_num_threads(1)

# %% [markdown]
# ## 1. The review's case, counted
#
# Each image costs its M tokens and two delimiters. The text costs about 1.33 tokens per word
# (OpenAI's rule of thumb: a token is about ¾ of an English word; Vietnamese costs more per word in
# most English-centred vocabularies).

# %%
words = 1500
text = text_tokens_from_words(words)
case = ContextBudget(context=4096, images=10, M=256, text_tokens=text)
print(case.summary())
budget_figure(case)

# %% [markdown]
# The formula, checked by hand against the package: used = images·(M + 2) + text.

# %%
assert text == round(1500 * TOKENS_PER_WORD) == 1995
assert case.image_tokens == 10 * (256 + IMAGE_DELIMITERS) == 2580
assert case.used == 2580 + 1995 == 4575
assert not case.fits and case.free == 4096 - 4575 == -479
display(Markdown(f"**It does not fit:** {case.used} tokens for a {case.context}-token window, "
                 f"{-case.free} too many — before a single token of the answer."))

# %% [markdown]
# ## 2. Three ways out
#
# - **Smaller M.** With the same images and text, the largest M per image that still fits:
# - **Fewer images.** At M = 256, how many images fit beside the text?
# - **Less text.** How many words are left for 10 images at M = 256?
#
# (Leaving room for the answer matters too: `reserve_answer` keeps tokens free for it.)

# %%
m_max = case.max_M()
n_max = case.max_images()
words_left = int((case.context - case.image_tokens) / TOKENS_PER_WORD)
rows = [
    ("largest M per image (10 images, 1.5k words)", m_max),
    ("most images at M = 256 (1.5k words)", n_max),
    ("words left for 10 images at M = 256", words_left),
    ("largest M with 300 tokens kept for the answer", ContextBudget(4096, 10, 256, text, reserve_answer=300).max_M()),
]
display(Markdown("| way out | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)))

# each answer, checked: it fits, and one more does not
assert ContextBudget(4096, 10, m_max, text).fits and not ContextBudget(4096, 10, m_max + 1, text).fits
assert ContextBudget(4096, n_max, 256, text).fits and not ContextBudget(4096, n_max + 1, 256, text).fits
assert ContextBudget(4096, 10, 256, text_tokens_from_words(words_left)).fits

# %% [markdown]
# The tokenizers in this project offer M ∈ {64, 256, 1024} (see `museumtok list`): at M = 64 all
# ten images fit with room to spare; at M = 1024 not even three do.

# %%
for M in (64, 256, 1024):
    b = ContextBudget(4096, 10, M, text)
    print(f"M = {M:4d}: {b.summary()}  | at most {b.max_images()} images of this M")

# %% [markdown]
# ## 3. Try it: the budget bar
#
# Move the sliders: number of images, tokens per image, words of text, context window and the
# reserve for the answer. The bar turns red when the prompt overflows.

# %%
@interact(images=IntSlider(10, 0, 32), M=IntSlider(256, 16, 1024, step=16), words=IntSlider(1500, 0, 6000, step=100),
          context=IntSlider(4096, 1024, 32768, step=1024), reserve=IntSlider(0, 0, 2048, step=64))
def show_budget(images, M, words, context, reserve):
    b = ContextBudget(context, images, M, text_tokens_from_words(words), reserve)
    print(b.summary())
    print(f"largest M that fits: {b.max_M()}; most images at this M: {b.max_images()}")
    return budget_figure(b)


# %%
show_budget(images=4, M=64, words=800, context=8192, reserve=256)      # the callback once more, with other values

# %% [markdown]
# ## 4. Why fewer tokens also means a faster answer (§6.2 in brief)
#
# Self-attention compares every token with every other one: for a sequence of n = M + L tokens
# (M image tokens, L text tokens) the score and value products cost 2·2·n²·d FLOPs per layer (two
# n×n×d matrix products, 2 FLOPs per multiply-add), while the Q, K, V, O projections cost
# 4·2·n·d² and grow only linearly. The review's §6.2 works this through for LLaMA-3 70B; notebook
# `06_integration` calibrates a full cost model on the embedded LLM. Here we only check the
# quadratic term against PyTorch's FLOP counter on a small attention layer.

# %%
from torch.utils.flop_counter import FlopCounterMode


def attention_flops(n: int, d: int) -> int:
    """Scores QKᵀ and values AV of one head-merged attention: 2 · (2·n·n·d) FLOPs."""
    return 2 * 2 * n * n * d


d = 64
for n in (16, 64, 128):
    q = k = v = torch.randn(1, n, d)
    with FlopCounterMode(display=False) as fc:
        scores = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)   # (1, n, n)
        out = scores @ v                                                 # (1, n, d)
    assert fc.get_total_flops() == attention_flops(n, d), (n, fc.get_total_flops())
print("attention FLOPs = 4·n²·d, as counted by torch.utils.flop_counter")

# %% [markdown]
# With L = 1200 text tokens, going from M = 256 to M = 64 shrinks n from 1456 to 1264: the
# quadratic term falls by (1264/1456)² ≈ 0.75, a quarter — not the 4× the review's §6.2 suggests
# (see `docs/errata.md`, row §6.2). The saving is large only when the image tokens dominate the
# sequence.

# %%
L = 1200
Ms = list(range(0, 1025, 32))
ratio = [attention_flops(M + L, 4096) / attention_flops(256 + L, 4096) for M in Ms]
assert abs(attention_flops(64 + L, 1) / attention_flops(256 + L, 1) - (1264 / 1456) ** 2) < 1e-12
lines_figure({"attention cost relative to M = 256 (L = 1200)": (Ms, ratio)}, "image tokens M",
             "relative attention FLOPs", title="Quadratic attention cost, one layer")
