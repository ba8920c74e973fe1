"""LoRA supervised fine-tuning so an LLM reads image tokens (review §7.2–7.3; LoRA: Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685).

The image tokenizer is frozen; the LLM's base weights are frozen. Trained are

* LoRA factors B·A (rank r) on the attention projections q, k, v, o (peft), and
* a delta ΔE (K+2, d) added to the embedding rows of ``<image>``, ``</image>`` and the K image tokens
  only (the rows :class:`~museumtok.llm.vocab.ImageVocab` added); every text row stays as it was.

    ids (B, n) ──embed_tokens (frozen)──> e (B, n, d) ──+ ΔE[ids - row_start] on image ids──> LLM with LoRA
                                                                                               │
                                     loss = cross-entropy on the answer tokens only (labels -100 elsewhere)

The adapter is saved as ``adapter.safetensors`` (LoRA factors + ΔE) and ``config.json``; the base
model is never copied. Held-out scoring ranks a fixed list of candidate answers by their
log-likelihood after the prompt (:func:`candidate_logprobs`).
"""
from __future__ import annotations

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

ADAPTER_FILE = "adapter.safetensors"
DELTA_KEY = "image_rows.delta"


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


class ImageRowDelta(nn.Module):
    """ΔE for the contiguous rows [row_start, row_start + n) of a frozen embedding, applied by a forward hook."""

    def __init__(self, embedding: nn.Embedding, row_start: int, n: int):
        super().__init__()
        self.row_start, self.n = int(row_start), int(n)
        self.delta = nn.Parameter(torch.zeros(n, embedding.weight.shape[1], dtype=embedding.weight.dtype,
                                              device=embedding.weight.device))   # (n, d)
        self.handle = embedding.register_forward_hook(self._hook)
        self.enabled = True          # False: the embedding behaves as the frozen base (adapter switched off)

    def _hook(self, module, args, out):
        if not self.enabled:
            return out
        ids = args[0]                                                   # (B, n_tok)
        k = ids - self.row_start
        on = (k >= 0) & (k < self.n)                                    # (B, n_tok)
        d = self.delta[k.clamp(0, self.n - 1)]                          # (B, n_tok, d)
        return out + d * on.unsqueeze(-1).to(out.dtype)

    def remove(self):
        self.handle.remove()

    def rehook(self, embedding: nn.Embedding) -> None:
        """Move the hook to ``embedding`` (resize_token_embeddings replaces the module)."""
        self.handle.remove()
        self.handle = embedding.register_forward_hook(self._hook)


def vocab_rows(vocab: ImageVocab) -> tuple[int, int]:
    """(row_start, n) of the vocab's rows; they must be contiguous: <image>, </image>, v0 … v(K-1)."""
    if not vocab.attached:
        raise ValueError("attach the ImageVocab to the model first (ImageVocab.attach)")
    if not (vocab.end_id == vocab.start_id + 1 and vocab.token_offset == vocab.end_id + 1):
        raise ValueError("the image vocab's rows are not contiguous (another vocab was attached in between); "
                         "fine-tune on a fresh model with only this vocab attached")
    return vocab.start_id, vocab.K + 2


def add_adapter(model, vocab: ImageVocab, cfg: AdapterConfig):
    """Freeze ``model`` (vocab already attached), wrap it with LoRA and add ΔE. Returns (peft_model, delta)."""
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    lcfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets),
                      bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, lcfg)
    start, n = vocab_rows(vocab)
    delta = ImageRowDelta(pm.get_input_embeddings(), start, n)
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
    base = W[delta.row_start + 2: delta.row_start + delta.n]                         # (K, d)
    delta.delta[2:] = target - base


def trainable_parameters(pm, delta) -> list[nn.Parameter]:
    return [p for p in pm.parameters() if p.requires_grad] + [delta.delta]


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


def guide_ids(image_ids: Sequence[int], turns: Sequence[tuple[str, str]], question: str, hf_tok,
              card: str | None = None) -> list[int]:
    """The ids the adapter was trained on (§7.3's form), for a live conversation: the image block,
    optionally the catalog card, the earlier (question, answer) turns each closed by eos, then the new
    question and "Guide:". Same token boundaries as :func:`encode_dialogue`."""
    eos = [hf_tok.eos_token_id] if hf_tok.eos_token_id is not None else []
    ids = list(image_ids)
    if card:
        ids += hf_tok(("\n" if ids else "") + f"Catalog card: {card}", add_special_tokens=False)["input_ids"]
    for q, a in turns:
        ids += hf_tok(("\n" if ids else "") + format_prompt(None, q), add_special_tokens=False)["input_ids"]
        ids += answer_ids(a.strip(), hf_tok) + eos
    return ids + hf_tok(("\n" if ids else "") + format_prompt(None, question), add_special_tokens=False)["input_ids"]


def guide_ids_from_messages(messages: Sequence[dict], hf_tok) -> list[int]:
    """A chat's messages (:func:`museumtok.llm.prompt.prefix_messages`: system with the card and the
    image block, then user/assistant turns, then the question) in the adapter's §7.3 form (:func:`guide_ids`).
    The persona is dropped: the adapter never saw it."""
    from .prompt import CARD_PREFIX
    from .vocab import IMAGE_END, IMAGE_START

    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    a, b = system.find(IMAGE_START), system.find(IMAGE_END)
    image = system[a:b + len(IMAGE_END)] if 0 <= a < b else ""
    card = next((ln[len(CARD_PREFIX):] for ln in system.splitlines() if ln.startswith(CARD_PREFIX)), None)
    chat = [m for m in messages if m["role"] in ("user", "assistant")]
    if not chat or chat[-1]["role"] != "user":
        raise ValueError("the last message must be the visitor's question")
    turns = [(chat[i]["content"], chat[i + 1]["content"]) for i in range(0, len(chat) - 1, 2)
             if chat[i]["role"] == "user" and chat[i + 1]["role"] == "assistant"]
    image_ids = hf_tok(image, add_special_tokens=False)["input_ids"] if image else []
    return guide_ids(image_ids, turns, chat[-1]["content"], hf_tok, card)


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


# ---- scoring -----------------------------------------------------------------------------------
@torch.no_grad()
def candidate_logprobs(model, prompt: list[int], candidates: Sequence[list[int]]) -> torch.Tensor:
    """Sum of log p(candidate tokens | prompt) for each candidate; the prompt runs once (batched candidates)."""
    C = len(candidates)
    n = max(len(c) for c in candidates)
    from .backend import _cache_kwarg

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    out = model(input_ids=ids, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)           # (V,)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    ckw = _cache_kwarg(model.get_base_model() if hasattr(model, "get_base_model") else model)
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
    """``adapter.safetensors`` (LoRA factors + ΔE) and ``config.json``; no base weights."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(pm, save_embedding_layers=False).items()}
    state[DELTA_KEY] = delta.delta.detach().cpu().contiguous()
    save_file(state, str(directory / ADAPTER_FILE), metadata={"format": "pt"})
    d = asdict(cfg)
    d["targets"] = list(cfg.targets)
    d["row_start"], d["rows"] = delta.row_start, delta.n
    (directory / "config.json").write_text(json.dumps(d, indent=2))
    return directory


def adapter_name(llm_name: str, tokenizer: str) -> str:
    """Checkpoint folder of an adapter: "sft-smollm2-lloyd-k1024" for the embedded LLM and lloyd-patch-k1024."""
    llm = "smollm2" if llm_name == "smollm2-135m-instruct" else re.sub(r"[^a-z0-9.]+", "-", llm_name.lower()).strip("-")
    return f"sft-{llm}-{tokenizer.replace('-patch', '')}"


def read_adapter_config(directory: Path) -> AdapterConfig:
    """The :class:`AdapterConfig` saved in ``directory/config.json``."""
    d = json.loads((Path(directory) / "config.json").read_text())
    d.pop("row_start", None)
    d.pop("rows", None)
    d["targets"] = tuple(d["targets"])
    return AdapterConfig(**d)


def load_adapter(directory: Path, model, hf_tok, vocab: ImageVocab | None = None):
    """Attach the saved adapter to a fresh base ``model``; returns (peft_model, delta, vocab, cfg)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = read_adapter_config(directory)
    if vocab is None:
        vocab = ImageVocab.for_tokenizer(cfg.tokenizer, cfg.K)
    if not vocab.attached:
        vocab.attach(model, hf_tok)
    pm, delta = add_adapter(model, vocab, cfg)
    state = load_file(str(directory / ADAPTER_FILE))
    dE = state.pop(DELTA_KEY)
    if dE.shape != delta.delta.shape:
        raise ValueError(f"ΔE has shape {tuple(dE.shape)}, the model expects {tuple(delta.delta.shape)}")
    with torch.no_grad():
        delta.delta.copy_(dE)
    res = set_peft_model_state_dict(pm, state)
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
