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
# # 8 · End to end: image → tokens → LLM, offline (§8 of the review)
#
# **What you will learn**
#
# - how the review's §8 example runs when its pieces are replaced by ones that exist on this
#   machine: our k-means tokenizer for the VQ-GAN, SmolLM2-135M-Instruct for Llama 3 8B;
# - what `" ".join(f"<v{idx}>")` costs when the LLM has never heard of `<v312>`: each image token
#   becomes several BPE pieces;
# - two slips in the example's code (the answer includes the prompt; `torch_dtype`), and the same
#   conversation done with the package: added vocabulary, chat template, streaming, audit.
#
# The VQ-GAN part of the review's code has its own errata (`data/errata.csv`, rows `s8-*`):
# taming-transformers' `VQModel` has no `from_pretrained`, and `encoder` + `quantize` skip `quant_conv`.

# %% [markdown]
# ## Tóm tắt
#
# Chương 8 chạy lại ví dụ PyTorch đầu-cuối của bài tổng quan (ảnh → token → LLM) hoàn toàn ngoại
# tuyến, với bộ token hoá k-means thay cho VQ-GAN và SmolLM2-135M-Instruct thay cho Llama 3 8B.
# Notebook cho thấy nếu LLM chưa biết từ `<v312>`, mỗi token ảnh bị BPE cắt thành nhiều mảnh và ảnh
# tốn gấp mấy lần $M$ token; thêm từ vựng ảnh thì đúng $M + 2$. Anh chị sẽ thấy hai lỗi trong đoạn mã
# của bài tổng quan (câu trả lời chứa cả prompt; tham số `torch_dtype`) và cách sửa, rồi chạy cùng
# cuộc hội thoại bằng gói `museumtok`: thêm từ vựng, mẫu hội thoại, phát trực tiếp và nhật ký kiểm
# toán.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | mẫu hội thoại | chat template | — |
# | phát trực tiếp | streaming | — |
# | mã hoá cặp byte | byte-pair encoding (BPE) | — |
# | từ vựng ảnh | image vocabulary | `<v_k>` |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import plotly.graph_objects as go
import torch
from ipywidgets import SelectionSlider, interact
from transformers import AutoTokenizer

from museumtok import registry
from museumtok.data.catalog import DataNotFound, load_catalog
from museumtok.llm.audit import AuditLog, read_log
from museumtok.llm.backends import TransformersBackend, embedded_cache_dir, embedded_gguf, embedded_is_cached
from museumtok.llm.chat import ChatSession
from museumtok.llm.vocab import ImageVocab
from museumtok.paths import cache_dir, fast_mode

FAST = fast_mode()
torch.set_num_threads(1)
USE_LLM = embedded_is_cached() or not FAST

try:
    entry = load_catalog(split="test", collection="artworks")[0]
    image, image_id = entry.find(), entry.id
except (DataNotFound, IndexError):
    image, image_id = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0)), "random-noise"
tok = registry.load("lloyd-patch-k1024")

# %% [markdown]
# ## 1. Encode the image (the review's step 2)
#
# The review encodes a 256×256 image with VQ-GAN f16 into 16 × 16 = 256 indices. Our k-means
# tokenizer gives the same grid at M = 256 (8×8 patches of a 128 px working image).

# %%
def encode_image_to_tokens(img, M: int = 256) -> torch.LongTensor:
    return tok.encode(img, M).indices.reshape(-1)


indices = encode_image_to_tokens(image)
print(image_id, indices.shape, indices[:12].tolist())
assert indices.numel() == 256

# %% [markdown]
# ## 2. Map indices to text (the review's step 3), and what that costs

# %%
IMG_START, IMG_END = "<image>", "</image>"


def format_image_tokens(indices: torch.LongTensor) -> str:
    return " ".join(f"<v{idx.item()}>" for idx in indices)


def build_prompt(image_indices, question: str) -> str:
    image_segment = format_image_tokens(image_indices)
    return f"{IMG_START} {image_segment} {IMG_END}\n" "Khách: " + question + "\n" "Hướng dẫn viên:"


prompt = build_prompt(indices, "Bức tranh này vẽ gì?")
print(prompt[:120], "…", prompt[-40:])

llm_tok = (AutoTokenizer.from_pretrained(str(embedded_cache_dir())) if embedded_is_cached()
           else AutoTokenizer.from_pretrained(str(embedded_gguf().parent), gguf_file=embedded_gguf().name))
image_text = f"{IMG_START} {format_image_tokens(indices)} {IMG_END}"
n_plain = len(llm_tok(image_text, add_special_tokens=False)["input_ids"])
print(f"256 image tokens as plain text: {n_plain} LLM tokens ({n_plain / 256:.1f} per image token)")

# %% [markdown]
# Slide the token count M (the tokenizer's menu): the context the image takes as plain text and as
# added words. The cost of plain text grows with M, and so does its ratio, because more tokens means
# more distinct, longer indices.

# %%
plain_tok = (AutoTokenizer.from_pretrained(str(embedded_cache_dir())) if embedded_is_cached()
             else AutoTokenizer.from_pretrained(str(embedded_gguf().parent), gguf_file=embedded_gguf().name))


def token_cost(M=256):
    """LLM tokens of one image of M tokens: as plain text `<v312> …`, and with the codewords added (M + 2)."""
    idx = encode_image_to_tokens(image, M)
    plain = len(plain_tok(f"{IMG_START} {format_image_tokens(idx)} {IMG_END}", add_special_tokens=False)["input_ids"])
    added = idx.numel() + 2
    assert plain > added
    fig = go.Figure(go.Bar(x=["plain text", "codewords added"], y=[plain, added], text=[plain, added]))
    fig.update_layout(height=300, yaxis_title="LLM tokens for the image",
                      title=f"M = {M}: plain text costs {plain / added:.1f}× the context")
    return fig


interact(token_cost, M=SelectionSlider(options=list(tok.supported_M), value=256, description="M"));

# %%
token_cost(M=min(tok.supported_M))          # the callback, with another M

# %% [markdown]
# Without added vocabulary, `<v312>` is split by the BPE into pieces such as `<`, `v`, `3`, `1`,
# `2`, `>`: the image costs several times M tokens of context, and the pieces mean digits, not
# patches. Adding the K codewords as words of their own (`ImageVocab.attach`) makes it exactly M + 2:

# %%
vocab = ImageVocab(K=tok.K)                       # the review's un-namespaced "<v312>"
llm_tok.add_tokens([IMG_START, IMG_END] + vocab.tokens)
ids = llm_tok(vocab.to_text(indices), add_special_tokens=False)["input_ids"]
assert len(ids) == 256 + 2
print(f"with the codewords added: {len(ids)} tokens; plain text cost {n_plain / len(ids):.1f}× more")

# %% [markdown]
# ## 3. Answer (the review's step 4), with the embedded LLM
#
# The review calls `llm_tokenizer.decode(output_ids[0])`: `generate` returns the prompt followed by
# the answer, so that "answer" starts with the whole prompt, image tokens included. Slicing off
# the prompt's length fixes it. (`torch_dtype=` is also `dtype=` in transformers 5.)

# %%
if USE_LLM:
    backend = TransformersBackend.embedded()
    llm, llm_tokenizer = backend.model, backend.tokenizer

    M_DEMO = 64 if FAST else 256            # fast mode: a quarter of the tokens, ~4× less prefill

    def answer_question(img, question: str, max_new_tokens: int = 24) -> tuple[str, str]:
        """(the review's decode, the fixed one) from one generate call."""
        prompt = build_prompt(encode_image_to_tokens(img, M_DEMO), question)
        inputs = llm_tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output_ids = llm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=llm_tokenizer.eos_token_id)
        as_printed = llm_tokenizer.decode(output_ids[0], skip_special_tokens=True)
        fixed = llm_tokenizer.decode(output_ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return as_printed, fixed

    as_printed, fixed = answer_question(image, "What does this painting show?", max_new_tokens=12 if FAST else 24)
    assert as_printed.startswith(IMG_START) and as_printed.endswith(fixed)
    print("review's decode:", as_printed[:80], "…", as_printed[-60:])
    print("fixed:          ", fixed)
else:
    print("SmolLM2 cache absent and fast mode on: run `museumtok llm convert` once to see the answers.")

# %% [markdown]
# ## 4. The same conversation with the package
#
# `ChatSession` adds the codewords to the LLM (new embedding rows, mean-initialised), puts the
# image in the system message of the model's chat template, plans the budget, streams the answer,
# reuses the image's KV cache on the next turn and logs every token and turn for audit.
# SmolLM2 was never trained on image tokens, so what it says about the picture is a guess: the
# pipeline is what this notebook shows; teaching the LLM the tokens is chapter 7's job.

# %%
if USE_LLM:
    log_path = cache_dir("notebooks") / "08_audit.jsonl"
    log_path.unlink(missing_ok=True)
    s = ChatSession(backend, audit=AuditLog(log_path), max_new_tokens=12 if FAST else 24, reserve_answer=24)
    s.set_image(tok, image, M_DEMO, image_id=image_id)
    for q in ("What does this painting show?", "Which colours dominate?")[: 1 if FAST else 2]:
        answer = list(s.ask(q))[-1]
        st = s.last.stats
        print(f"Q: {q}\nA: {answer}\n   (TTFT {st['ttft_s'] * 1e3:.0f} ms, {st['reused_tokens']}/{st['prompt_tokens']} "
              f"prompt tokens from the KV cache, {st['tokens_per_s']:.1f} tokens/s)")
    recs = list(read_log(log_path))
    assert sum(r["type"] == "image_token" for r in recs) == M_DEMO and recs[-1]["type"] == "turn"
    print(recs[0])
