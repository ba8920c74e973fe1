"""LoRA supervised fine-tuning so an LLM reads image tokens (review §7.2–7.3; LoRA: Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685).

The image tokenizer is frozen; the LLM's base weights are frozen. Trained are

* LoRA factors B·A (rank r) on the attention projections q, k, v, o (peft), and
* a delta ΔE (K+2, d) added to the embedding rows of ``<image>``, ``</image>`` and the K image tokens
  only (the rows :class:`~museumtok.llm.vocab.ImageVocab` added); every text row stays as it was.

    ids (B, n) ──embed_tokens (frozen)──> e (B, n, d) ──+ ΔE[ids - row_start] on image ids──> LLM with LoRA
                                                                                               │
                                     loss = cross-entropy on the answer tokens only (labels -100 elsewhere)

The adapter is saved in peft's own layout, so that ``peft.PeftModel.from_pretrained(base, folder)`` loads
its LoRA factors: ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's key names), and beside
them what peft does not know: ``image_rows.safetensors`` (ΔE and the 2-D position tables) and
``config.json`` (:class:`AdapterConfig`: tokenizer, K, M, base LLM, training summary). The base model is
never copied. Folders of the earlier layout (one ``adapter.safetensors``) still load, and
:func:`convert_adapter` rewrites them in place. Held-out scoring ranks a fixed list of candidate answers by their
log-likelihood after the prompt (:func:`candidate_logprobs`).
"""
from __future__ import annotations

import contextlib

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .sft_data import QAExample, format_prompt
from .vocab import ImageVocab

PEFT_CONFIG_FILE = "adapter_config.json"     # peft's LoraConfig
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"   # peft's LoRA factors
ROWS_FILE = "image_rows.safetensors"        # ΔE (+ the 2-D position tables)
OLD_ADAPTER_FILE = "adapter.safetensors"    # the earlier layout: LoRA factors and ΔE in one file
#: Hub id of a base model known by its short name (written as peft's ``base_model_name_or_path``)
BASE_MODEL_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
DELTA_KEY = "image_rows.delta"
POS_ROW_KEY = "image_rows.pos_row"
POS_COL_KEY = "image_rows.pos_col"


@dataclass
class AdapterConfig:
    r: int = 8                                  # LoRA rank
    alpha: int = 16                             # LoRA scale numerator (scale = alpha / r)
    dropout: float = 0.0                        # LoRA dropout on the adapted inputs
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # adapted linear layers
    tokenizer: str = "lloyd-patch-k1024"        # frozen image tokenizer (registry name)
    K: int = 1024                               # its codebook size
    M: int = 64                                 # image tokens per crop used in training
    base: str = "smollm2-135m-instruct"         # the LLM the adapter belongs to
    extra: dict = field(default_factory=dict)   # free-form facts (training summary)
    version: int = 1                            # 1: one-word answers, §7.3 form; 2: the guide (sentences, card line)
    pos2d: int = 0                              # bins per axis of the 2-D position embedding on image tokens (0: none)
    row_ends: bool = False                      # a "\n" token after each row of the token grid (Chameleon/Emu3)


class ImageRowDelta(nn.Module):
    """ΔE for one vocabulary's rows of a frozen embedding — ``<image>``, ``</image>`` and the K image tokens,
    stored as (K+2, d) in that order — applied by a forward hook; optionally a 2-D position embedding added
    to each image token (``pos2d`` bins per axis). ``<image>``/``</image>`` are shared by every vocabulary,
    so only the active adapter's hook is ``enabled``.

    The position of an image token is read from the ids themselves: its row is the number of row-end ids
    (``row_end_id``, the "\\n" token) since ``<image>``, its column the number of image tokens since the row
    began (without row ends, a square grid is assumed). Rows and columns are scaled to [0, 1] and the
    embedding is interpolated linearly between ``pos2d`` learned vectors per axis:

        e(v_k at row r, col c) = E[v_k] + ΔE[v_k] + P_row(r / (h-1)) + P_col(c / (w-1))
    """

    def __init__(self, embedding: nn.Embedding, rows: "VocabRows", pos2d: int = 0, row_end_id: int | None = None):
        super().__init__()
        self.rows = rows
        self.n = rows.K + 2
        w = embedding.weight
        self.delta = nn.Parameter(torch.zeros(self.n, w.shape[1], dtype=w.dtype, device=w.device))   # (K+2, d)
        self.pos2d, self.row_end_id = int(pos2d), row_end_id
        if self.pos2d:
            self.pos_row = nn.Parameter(torch.zeros(self.pos2d, w.shape[1], dtype=w.dtype, device=w.device))  # (G, d)
            self.pos_col = nn.Parameter(torch.zeros(self.pos2d, w.shape[1], dtype=w.dtype, device=w.device))  # (G, d)
        self.handle = embedding.register_forward_hook(self._hook)
        self.enabled = True          # False: the embedding behaves as the frozen base (adapter switched off)

    @property
    def row_start(self) -> int:
        return self.rows.start_id

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [self.delta] + ([self.pos_row, self.pos_col] if self.pos2d else [])

    def slots(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of ΔE for each id: 0 for <image>, 1 for </image>, 2 + k for image token k, -1 otherwise."""
        r = self.rows
        k = ids - r.token_offset
        tok = (k >= 0) & (k < r.K)
        out = torch.where(tok, k + 2, torch.full_like(ids, -1))
        return torch.where(ids == r.start_id, torch.zeros_like(ids), torch.where(ids == r.end_id, torch.ones_like(ids), out))

    def _hook(self, module, args, out):
        if not self.enabled:
            return out
        ids = args[0]                                                   # (B, n_tok)
        slot = self.slots(ids)                                          # (B, n_tok)
        on = slot >= 0
        d = self.delta[slot.clamp(min=0)]                               # (B, n_tok, d)
        out = out + d * on.unsqueeze(-1).to(out.dtype)
        if self.pos2d and bool((slot >= 2).any()):
            r = self.rows
            u, v, img = grid_positions(ids, r.start_id, r.end_id, r.token_offset, r.token_offset + r.K,
                                       self.row_end_id)                 # (B, n_tok) each
            out = out + (_lerp(self.pos_row, u) + _lerp(self.pos_col, v)) * img.unsqueeze(-1).to(out.dtype)
        return out

    def remove(self):
        self.handle.remove()

    def rehook(self, embedding: nn.Embedding) -> None:
        """Move the hook to ``embedding`` (resize_token_embeddings replaces the module)."""
        self.handle.remove()
        self.handle = embedding.register_forward_hook(self._hook)


def _lerp(table: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (G, d) interpolated at u ∈ [0, 1] (B, n) -> (B, n, d)."""
    G = table.shape[0]
    x = u.clamp(0, 1) * (G - 1)
    i0 = x.floor().long().clamp(0, G - 2) if G > 1 else torch.zeros_like(x, dtype=torch.long)
    f = (x - i0).unsqueeze(-1).to(table.dtype)
    return table[i0] * (1 - f) + table[(i0 + 1).clamp(max=G - 1)] * f


def grid_positions(ids: torch.Tensor, start_id: int, end_id: int, first: int, stop: int,
                   row_end_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and column (scaled to [0, 1]) of every image token in each ``<image> … </image>`` block of ids (B, n);
    image tokens are ids in [first, stop). Returns (u_row, v_col, is_image_token), each (B, n)."""
    B, n = ids.shape
    u = torch.zeros(B, n)
    v = torch.zeros(B, n)
    img = torch.zeros(B, n, dtype=torch.bool)
    rows = ids.tolist()
    for b, row in enumerate(rows):
        j = 0
        while j < n:
            if row[j] != start_id:
                j += 1
                continue
            cells: list[tuple[int, int, int]] = []        # (position, row, column)
            r = c = 0
            j += 1
            while j < n and row[j] != end_id and row[j] != start_id:
                t = row[j]
                if row_end_id is not None and t == row_end_id:
                    r, c = r + 1, 0
                elif first <= t < stop:
                    cells.append((j, r, c))
                    c += 1
                j += 1
            if not cells:
                continue
            if row_end_id is None or max(rc[1] for rc in cells) == 0:
                side = int(round(len(cells) ** 0.5))
                w = side if side * side == len(cells) else len(cells)
                cells = [(p, i // w, i % w) for i, (p, _, _) in enumerate(cells)]
            h = max(rc[1] for rc in cells) + 1
            w = max(rc[2] for rc in cells) + 1
            for p, rr, cc in cells:
                u[b, p] = rr / max(1, h - 1)
                v[b, p] = cc / max(1, w - 1)
                img[b, p] = True
    return u.to(ids.device), v.to(ids.device), img.to(ids.device)


@dataclass(frozen=True)
class VocabRows:
    start_id: int        # LLM id of <image>
    end_id: int          # LLM id of </image>
    token_offset: int    # LLM id of image token 0
    K: int               # image tokens


def vocab_rows(vocab: ImageVocab) -> VocabRows:
    """Where an attached vocabulary's ids lie in the LLM's embedding."""
    if not vocab.attached:
        raise ValueError("attach the ImageVocab to the model first (ImageVocab.attach)")
    return VocabRows(vocab.start_id, vocab.end_id, vocab.token_offset, vocab.K)


def _lora_config(cfg: AdapterConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets),
                      bias="none", task_type="CAUSAL_LM")


def add_adapter(model, vocab: ImageVocab, cfg: AdapterConfig, row_end_id: int | None = None,
                adapter_name: str = "default"):
    """Freeze ``model`` (vocab already attached), wrap it with LoRA and add ΔE (and the 2-D position
    embedding when ``cfg.pos2d``; ``row_end_id``: the id that ends a grid row when ``cfg.row_ends``).
    ``model`` may already be a peft model: the adapter is then added beside the others as
    ``adapter_name`` (and made active). Returns (peft_model, delta)."""
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        pm = model
        pm.add_adapter(adapter_name, _lora_config(cfg))
        pm.set_adapter(adapter_name)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        pm = get_peft_model(model, _lora_config(cfg), adapter_name=adapter_name)
    delta = ImageRowDelta(pm.get_input_embeddings(), vocab_rows(vocab), pos2d=cfg.pos2d,
                          row_end_id=row_end_id if cfg.row_ends else None)
    return pm, delta


@torch.no_grad()
def code_words(tokenizer, M: int, batch: int = 128) -> list[str]:
    """One palette word per codeword: decode a grid filled with code k through the frozen tokenizer
    and name its dominant colour (:func:`~museumtok.llm.sft_data.dominant_colour`). (K,) words."""
    from .sft_data import dominant_colour

    S = tokenizer.working_size(M)
    shape = tuple(tokenizer.encode_tensor(torch.zeros(1, 3, S, S), M).shape[1:])   # (h, w) or (M,)
    words: list[str] = []
    for s in range(0, tokenizer.K, batch):
        k = torch.arange(s, min(tokenizer.K, s + batch))                            # (b,)
        grid = k.view(-1, *([1] * len(shape))).expand(-1, *shape)                    # (b, h, w)
        x = tokenizer.decode_indices(grid, M).clamp(0, 1)                             # (b, 3, S, S)
        words += [dominant_colour(xi) for xi in x]
    return words


@torch.no_grad()
def word_init_delta(pm, delta: "ImageRowDelta", hf_tok, words: Sequence[str]) -> None:
    """Start ΔE so that image token v_k embeds like the text word ``words[k]`` (" blue", " brown", …):
    row(v_k) = mean of the word's sub-token embeddings. The LLM then reads an untrained image block as
    a list of colour words, a prior the SFT refines. ``<image>``/``</image>`` keep their rows.
    Stored in ΔE (not in the base rows), so saved adapters reload on a plain mean-initialised vocab."""
    W = pm.get_input_embeddings().weight                                            # (V, d)
    if len(words) != delta.n - 2:
        raise ValueError(f"need {delta.n - 2} words (one per code), got {len(words)}")
    table = {w: W[hf_tok(" " + w, add_special_tokens=False)["input_ids"]].float().mean(0) for w in set(words)}
    target = torch.stack([table[w] for w in words]).to(W.dtype)                     # (K, d)
    base = W[delta.rows.token_offset: delta.rows.token_offset + delta.rows.K]        # (K, d)
    delta.delta[2:] = target - base


@torch.no_grad()
def word_init_positions(pm, delta: "ImageRowDelta", hf_tok, scale: float = 0.5) -> None:
    """Start the 2-D position embedding as the words "top"→"bottom" along rows and "left"→"right" along
    columns: P_row(u) = s·(½ − u)·(e_top − e_bottom), P_col(v) = s·(½ − v)·(e_left − e_right), so an image
    token near the top already carries a little of " top" (same idea as :func:`word_init_delta`)."""
    if not delta.pos2d:
        return
    W = pm.get_input_embeddings().weight
    e = {w: W[hf_tok(" " + w, add_special_tokens=False)["input_ids"]].float().mean(0)
         for w in ("top", "bottom", "left", "right")}
    g = torch.linspace(0, 1, delta.pos2d).unsqueeze(1)                          # (G, 1)
    delta.pos_row.copy_((scale * (0.5 - g) * (e["top"] - e["bottom"])).to(W.dtype))
    delta.pos_col.copy_((scale * (0.5 - g) * (e["left"] - e["right"])).to(W.dtype))


def trainable_parameters(pm, delta) -> list[nn.Parameter]:
    return [p for p in pm.parameters() if p.requires_grad] + delta.parameters_to_train()


# ---- examples -> ids ---------------------------------------------------------------------------
def prompt_ids(ex: QAExample, hf_tok, vocab: ImageVocab, image: str = "real",
               rng: random.Random | None = None) -> list[int]:
    """The prompt's ids. ``image``: "real" tokens, "shuffled" (same tokens, random order) or "none"."""
    if image not in ("real", "shuffled", "none"):
        raise ValueError(f"image must be 'real', 'shuffled' or 'none', got {image!r}")
    ids: list[int] = []
    if image != "none":
        idx = ex.indices.reshape(-1)
        if image == "shuffled":
            perm = list(range(len(idx)))
            (rng or random.Random(0)).shuffle(perm)
            idx = idx[perm]
        ids = vocab.to_ids(idx).tolist()
        text = "\n" + format_prompt(None, ex.question)
    else:
        text = format_prompt(None, ex.question)
    return ids + hf_tok(text, add_special_tokens=False)["input_ids"]


def answer_ids(answer: str, hf_tok) -> list[int]:
    return hf_tok(" " + answer, add_special_tokens=False)["input_ids"]


def encode_example(ex: QAExample, hf_tok, vocab: ImageVocab, image: str = "real") -> tuple[list[int], list[int]]:
    """(input_ids, labels): labels are -100 on the prompt, the answer's ids (+ eos) on the answer."""
    p = prompt_ids(ex, hf_tok, vocab, image)
    a = answer_ids(ex.answer, hf_tok) + ([hf_tok.eos_token_id] if hf_tok.eos_token_id is not None else [])
    return p + a, [-100] * len(p) + a


def encode_dialogue(exs: Sequence[QAExample], hf_tok, vocab: ImageVocab) -> tuple[list[int], list[int]]:
    """Several questions about one crop as one multi-turn sequence: the image once, then
    "Visitor: q / Guide: a" turns (loss on every answer). Cheaper per answer than one sequence each."""
    if len({id(e.indices) for e in exs}) > 1 and len({e.crop for e in exs}) > 1:
        raise ValueError("encode_dialogue needs examples of one crop")
    ids, lab = encode_example(exs[0], hf_tok, vocab)
    for e in exs[1:]:
        p = hf_tok("\n" + format_prompt(None, e.question), add_special_tokens=False)["input_ids"]
        a = answer_ids(e.answer, hf_tok) + ([hf_tok.eos_token_id] if hf_tok.eos_token_id is not None else [])
        ids, lab = ids + p + a, lab + [-100] * len(p) + a
    return ids, lab


def newline_id(hf_tok) -> int | None:
    """The id of "\\n" alone (the row-end token of the grid format), or None if it is not one token."""
    ids = hf_tok("\n", add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else None


def image_ids(vocab: ImageVocab, indices: torch.Tensor, row_end_id: int | None = None) -> list[int]:
    """``<image>`` + the tokens row by row (each row closed by ``row_end_id`` when given) + ``</image>``.
    ``indices`` (h, w) is a grid; a 1-D sequence has no rows."""
    if row_end_id is None or indices.dim() != 2:
        return vocab.to_ids(indices).tolist()
    ids = [vocab.start_id]
    for row in indices:
        ids += vocab.to_ids(row, delimiters=False).tolist() + [row_end_id]
    return ids + [vocab.end_id]


def guide_ids(image_ids: Sequence[int], turns: Sequence[tuple[str, str]], question: str, hf_tok,
              card: str | None = None, card_line: bool = False) -> list[int]:
    """The ids the adapter was trained on (§7.3's form), for a live conversation: the image block,
    the catalog card (``card_line``: always a card line, "none (…)" when there is no card, as version-2
    adapters are trained), the earlier (question, answer) turns each closed by eos, then the new
    question and "Guide:". Same token boundaries as :func:`encode_dialogue` / :func:`encode_guide_dialogue`."""
    from .guide import CARD_LINE, NO_CARD

    eos = [hf_tok.eos_token_id] if hf_tok.eos_token_id is not None else []
    ids = list(image_ids)
    if card or card_line:
        ids += hf_tok(("\n" if ids else "") + CARD_LINE + (card or NO_CARD), add_special_tokens=False)["input_ids"]
    for q, a in turns:
        ids += hf_tok(("\n" if ids else "") + format_prompt(None, q), add_special_tokens=False)["input_ids"]
        ids += answer_ids(a.strip(), hf_tok) + eos
    return ids + hf_tok(("\n" if ids else "") + format_prompt(None, question), add_special_tokens=False)["input_ids"]


def encode_guide_dialogue(image: Sequence[int], card: str | None, turns: Sequence[tuple[str, str]],
                          hf_tok) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one version-2 training dialogue: image block (may be empty), card line,
    then "Visitor: q / Guide: a" turns; the loss is on every answer and its eos only."""
    eos = [hf_tok.eos_token_id] if hf_tok.eos_token_id is not None else []
    ids = guide_ids(image, [], turns[0][0], hf_tok, card, card_line=True)
    lab = [-100] * len(ids)
    for i, (q, a) in enumerate(turns):
        if i:
            p = hf_tok("\n" + format_prompt(None, q), add_special_tokens=False)["input_ids"]
            ids, lab = ids + p, lab + [-100] * len(p)
        ans = answer_ids(a, hf_tok) + eos
        ids, lab = ids + ans, lab + ans
    return ids, lab


def guide_ids_from_messages(messages: Sequence[dict], hf_tok, card_line: bool = False) -> list[int]:
    """A chat's messages (:func:`museumtok.llm.prompt.prefix_messages`: system with the card and the
    image block, then user/assistant turns, then the question) in the adapter's §7.3 form (:func:`guide_ids`).
    The persona is dropped: the adapter never saw it. The image block's text is tokenized as is, so a
    grid written with row ends ("\\n") gives the row-end ids the adapter was trained with."""
    from .prompt import CARD_PREFIX
    from .vocab import IMAGE_END, IMAGE_START

    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    a, b = system.find(IMAGE_START), system.find(IMAGE_END)
    image = system[a:b + len(IMAGE_END)] if 0 <= a < b else ""
    card = next((ln[len(CARD_PREFIX):] for ln in system.splitlines() if ln.startswith(CARD_PREFIX)), None)
    chat = [m for m in messages if m["role"] in ("user", "assistant")]
    if not chat or chat[-1]["role"] != "user":
        raise ValueError("the last message must be the visitor's question")
    turns = [(chat[i]["content"], chat[i + 1]["content"]) for i in range(0, len(chat) - 1, 2)
             if chat[i]["role"] == "user" and chat[i + 1]["role"] == "assistant"]
    image_ids = hf_tok(image, add_special_tokens=False)["input_ids"] if image else []
    return guide_ids(image_ids, turns, chat[-1]["content"], hf_tok, card, card_line=card_line)


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest; attention_mask 0 and labels -100 on padding."""
    n = max(len(i) for i, _ in pairs)
    ids = torch.full((len(pairs), n), pad_id, dtype=torch.long)
    lab = torch.full((len(pairs), n), -100, dtype=torch.long)
    att = torch.zeros((len(pairs), n), dtype=torch.long)
    for b, (i, l) in enumerate(pairs):
        ids[b, :len(i)] = torch.tensor(i)
        lab[b, :len(l)] = torch.tensor(l)
        att[b, :len(i)] = 1
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def sft_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over answer tokens (transformers shifts the labels); the batch moves to the model's device."""
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in batch.items()}).loss


def answer_only_loss(model, batch: dict[str, torch.Tensor], bf16: bool = False) -> torch.Tensor:
    """The same loss as :func:`sft_loss`, with the output head applied only where there is a label.

    The head (V × d, V ≈ 50k) costs a fifth of SmolLM2's forward per position; answers are a fifth of
    the positions, so skipping the rest, plus bf16 autocast where the CPU has bf16 units, makes a step
    ~2.4× faster on this machine (``benchmarks/sft_speed.py``). ``bf16``: autocast (CPU or CUDA)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(model.parameters()).device
    ids, att, lab = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():  # or the caller's
        h = base.model(input_ids=ids, attention_mask=att).last_hidden_state     # (B, n, d)
        tgt = lab[:, 1:]                                                          # (B, n-1)
        keep = tgt != -100
        logits = base.lm_head(h[:, :-1][keep])                                    # (N_answer, V)
    return torch.nn.functional.cross_entropy(logits.float(), tgt[keep])


# ---- scoring -----------------------------------------------------------------------------------
@torch.no_grad()
def candidate_logprobs(model, prompt: list[int], candidates: Sequence[list[int]]) -> torch.Tensor:
    """Sum of log p(candidate tokens | prompt) for each candidate; the prompt runs once (batched candidates)."""
    C = len(candidates)
    n = max(len(c) for c in candidates)
    from .hf_compat import cache_kwarg

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    out = model(input_ids=ids, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)           # (V,)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    ckw = cache_kwarg(model.get_base_model() if hasattr(model, "get_base_model") else model)
    scores = torch.tensor([float(first[c[0]]) for c in candidates])
    if n == 1:
        return scores
    # the rest of each candidate, batched: repeat the cache C times
    cache.batch_repeat_interleave(C)
    pad = torch.zeros((C, n - 1), dtype=torch.long, device=device)
    for b, c in enumerate(candidates):
        if len(c) > 1:
            pad[b, :len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)   # feed c[:-1] to predict c[1:]
    att = torch.ones((C, len(prompt) + n - 1), dtype=torch.long, device=device)
    lp = torch.log_softmax(model(input_ids=pad, attention_mask=att, **{ckw: cache}).logits.float(), -1)  # (C, n-1, V)
    for b, c in enumerate(candidates):
        for j in range(1, len(c)):
            scores[b] += float(lp[b, j - 1, c[j]])
    return scores


def pick(model, prompt: list[int], candidates: Sequence[str], hf_tok) -> str:
    """The candidate answer with the highest log-likelihood after ``prompt``."""
    s = candidate_logprobs(model, prompt, [answer_ids(c, hf_tok) for c in candidates])
    return candidates[int(s.argmax())]


# ---- save / load -------------------------------------------------------------------------------
def save_adapter(directory: Path, pm, delta: ImageRowDelta, cfg: AdapterConfig) -> Path:
    """peft's ``adapter_config.json`` + ``adapter_model.safetensors``, and ``image_rows.safetensors`` (ΔE) +
    ``config.json`` beside them; no base weights."""
    from peft import get_peft_model_state_dict

    lora = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(pm, save_embedding_layers=False).items()}
    rows = {DELTA_KEY: delta.delta.detach().cpu().contiguous()}
    if delta.pos2d:
        rows[POS_ROW_KEY] = delta.pos_row.detach().cpu().contiguous()
        rows[POS_COL_KEY] = delta.pos_col.detach().cpu().contiguous()
    d = asdict(cfg)
    d["targets"] = list(cfg.targets)
    d["row_start"], d["rows"] = delta.row_start, delta.n     # informational: where the rows were in training
    return _write_adapter(Path(directory), lora, rows, d)


def _write_adapter(directory: Path, lora: dict, rows: dict, d: dict) -> Path:
    """Write the four files of an adapter folder (``d``: config.json's content)."""
    from safetensors.torch import save_file

    from ..checkpoint import stamp_class

    directory.mkdir(parents=True, exist_ok=True)
    cfg = read_adapter_config_dict(d)
    lc = _lora_config(cfg)
    lc.base_model_name_or_path = BASE_MODEL_IDS.get(cfg.base, cfg.base)
    lc.inference_mode = True                                   # as peft's own save_pretrained writes it
    lc.save_pretrained(str(directory))                         # adapter_config.json
    pc = json.loads((directory / PEFT_CONFIG_FILE).read_text())
    pc["target_modules"] = sorted(pc["target_modules"])       # peft writes a set: its order varies per process
    (directory / PEFT_CONFIG_FILE).write_text(json.dumps(pc, indent=2, sort_keys=True))
    save_file(lora, str(directory / PEFT_WEIGHTS_FILE), metadata={"format": "pt"})
    save_file(rows, str(directory / ROWS_FILE), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(d, indent=2))
    stamp_class(directory, "PeftModel")
    (directory / OLD_ADAPTER_FILE).unlink(missing_ok=True)    # an earlier save into the same folder
    return directory


def convert_adapter(directory: Path) -> bool:
    """Rewrite an adapter folder of the earlier layout (one ``adapter.safetensors`` holding the LoRA factors
    under peft's key names and ΔE) into peft's layout, in place; the tensors are copied unchanged, so the
    adapter computes exactly what it did. False when there was nothing to convert."""
    directory = Path(directory)
    old = directory / OLD_ADAPTER_FILE
    if not old.is_file():
        return False
    lora, rows = read_adapter_weights(directory)
    d = json.loads((directory / "config.json").read_text())
    _write_adapter(directory, lora, rows, d)
    return True


def read_adapter_weights(directory: Path) -> tuple[dict, dict]:
    """(LoRA factors by peft's key names, image-row tensors) of an adapter folder, either layout."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if (directory / PEFT_WEIGHTS_FILE).is_file():
        return load_file(str(directory / PEFT_WEIGHTS_FILE)), load_file(str(directory / ROWS_FILE))
    state = load_file(str(directory / OLD_ADAPTER_FILE))
    rows = {k: state.pop(k) for k in (DELTA_KEY, POS_ROW_KEY, POS_COL_KEY) if k in state}
    return state, rows


def adapter_name(llm_name: str, tokenizer: str) -> str:
    """Checkpoint folder of an adapter: "sft-smollm2-lloyd-k1024" for the embedded LLM and lloyd-patch-k1024."""
    llm = "smollm2" if llm_name == "smollm2-135m-instruct" else re.sub(r"[^a-z0-9.]+", "-", llm_name.lower()).strip("-")
    return f"sft-{llm}-{tokenizer.replace('-patch', '')}"


def read_adapter_config(directory: Path) -> AdapterConfig:
    """The :class:`AdapterConfig` saved in ``directory/config.json``."""
    return read_adapter_config_dict(json.loads((Path(directory) / "config.json").read_text()))


def read_adapter_config_dict(d: dict) -> AdapterConfig:
    """:class:`AdapterConfig` from config.json's content (its informational and ``_`` metadata keys dropped)."""
    d = {k: v for k, v in d.items() if not k.startswith("_") and k not in ("row_start", "rows", "lora_format")}
    d["targets"] = tuple(d["targets"])
    return AdapterConfig(**d)


def load_adapter(directory: Path, model, hf_tok, vocab: ImageVocab | None = None, adapter_name: str = "default"):
    """Attach the saved adapter to a base ``model`` (or, named ``adapter_name``, to a peft model that already
    holds others); returns (peft_model, delta, vocab, cfg)."""
    from peft import set_peft_model_state_dict

    directory = Path(directory)
    cfg = read_adapter_config(directory)
    if vocab is None:
        vocab = ImageVocab.for_tokenizer(cfg.tokenizer, cfg.K)
    if not vocab.attached:
        vocab.attach(model, hf_tok)
    pm, delta = add_adapter(model, vocab, cfg, row_end_id=newline_id(hf_tok), adapter_name=adapter_name)
    state, rows = read_adapter_weights(directory)
    dE = rows[DELTA_KEY]
    if dE.shape != delta.delta.shape:
        raise ValueError(f"ΔE has shape {tuple(dE.shape)}, the model expects {tuple(delta.delta.shape)}")
    with torch.no_grad():
        delta.delta.copy_(dE)
        if cfg.pos2d:
            delta.pos_row.copy_(rows[POS_ROW_KEY])
            delta.pos_col.copy_(rows[POS_COL_KEY])
    res = set_peft_model_state_dict(pm, state, adapter_name=adapter_name)
    missing = [k for k in getattr(res, "unexpected_keys", [])]
    if missing:
        raise ValueError(f"adapter keys the model does not have: {missing[:5]}")
    return pm.eval(), delta, vocab, cfg


def tiny_llama(seed: int = 0, hidden: int = 32, layers: int = 2):
    """A tiny randomly initialised Llama and a 300-word byte-level BPE trained on the QA vocabulary
    (tests and the notebook's fast mode); returns (model, hf_tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from .sft_data import CANDIDATES, QUESTIONS

    corpus = [f"Visitor: {q}\nGuide: {a}" for q in QUESTIONS.values() for c in CANDIDATES.values() for a in c]
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval(), hf_tok
