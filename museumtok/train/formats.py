"""``museumtok train formats``: the three ways of §6.1 of bringing image tokens into a frozen LLM, trained on
one small task and measured side by side (notebook 06 runs it with small settings).

Task: the guide's visual questions (:mod:`museumtok.llm.guide`: colour and brightness by default) about
random crops of the artworks, tokenized once by a frozen image tokenizer (``lloyd-patch-k1024``, M = 64).
Training uses the TRAIN artworks and the guide's training phrasings; the evaluation uses crops of the TEST
artworks and the held-out phrasings. The answer is one word (``" blue"``, ``" dark"``), trained with
cross-entropy; evaluated by ranking the kind's candidate words at the last prompt position, scored with
:func:`museumtok.llm.guide.score`. The LLM (the embedded SmolLM2-135M) stays frozen in all three:

=============  ==========================================================================================
``prefix``     ``<image> e_1 … e_M </image>`` then "Visitor: q / Guide:"; image token m embeds as
               W·c_k + b, c_k the frozen codebook vector of its code k plus a learned position vector
               (the review's "prefix linear"); trained: W, b, the positions, the two delimiters
``interleaved`` the same block where the question points at the image: "Visitor: q <image>…</image> /
               Guide:". With one image per prompt it differs from the prefix only by its place: after
               the question, so (causal attention) the image tokens can read the question
``gated``      Flamingo: one ``<image>`` marker in the context; the codes go through a Perceiver Resampler
               (n latents) that gated cross-attention blocks before every k-th LM layer read
               (:mod:`museumtok.models.gated_xattn`); trained: the resampler and the blocks (the marker
               is the LM's mean embedding row, frozen)
=============  ==========================================================================================

Every format sees the same batches in the same order and gets the same wall-clock budget (``max_seconds``)
and step cap (``max_steps``): in equal time a format with a short context makes more steps. Reported per
format: held-out accuracy per kind, trainable parameters, context tokens (LM positions of a prompt),
prefill time of one prompt, steps, seconds. The frozen LM's own accuracy (the gated model at step 0, which
is exactly the LM) and the majority answer are the floors.

    .venv/bin/museumtok train formats --max-seconds 45 --eval-crops 24
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.gated_xattn import CodeFeatures, CodeResampler, GatedXAttnConfig, GatedXAttnLM, code_table
from ..models.resampler import ResamplerConfig
from . import register_trainer

FORMATS = ("prefix", "interleaved", "gated")
#: the candidate answers of each visual kind, and the key of guide.score() that says it was right
CANDIDATES: dict[str, tuple[str, ...]] = {
    "colour": ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "grey"),
    "brightness": ("bright", "dark"), "warmth": ("warm", "cool"), "light": ("left", "right", "top", "bottom"),
}
SCORE_KEY = {"colour": "colour_top1", "brightness": "brightness", "warmth": "warmth", "light": "light"}


@dataclass
class FormatsConfig:
    tokenizer: str = "lloyd-patch-k1024"   # frozen image tokenizer (registry name)
    M: int = 64                            # image tokens per crop (64: the smallest M of the registry's tokenizers)
    llm: str = "embedded"                  # "embedded" (SmolLM2-135M-Instruct, CPU fp32) or "tiny" (a random tiny Llama: tests)
    formats: tuple[str, ...] = FORMATS     # which of prefix / interleaved / gated to train
    kinds: tuple[str, ...] = ("colour", "brightness")   # guide question kinds (colour, brightness, warmth, light)
    train_crops: int = 512                 # random crops of the TRAIN artworks, tokenized once
    eval_crops: int = 24                   # random crops of the TEST artworks; each is asked every kind
    batch: int = 8                         # questions per optimiser step
    max_steps: int = 400                   # optimiser steps per format (fewer when max_seconds runs out)
    max_seconds: float = 45.0              # wall-clock training budget per format
    loss: str = "candidates"               # "candidates": cross-entropy over the kind's answer words; "lm": next-token CE
    lr: float = 3e-3                       # AdamW learning rate of the new weights
    gate_lr: float = 3e-2                  # AdamW learning rate of the tanh gates α (they start at 0)
    every: int = 10                        # gated: a block before every k-th LM layer (SmolLM2: 30 layers -> 3 blocks)
    xattn_heads: int = 4                   # gated: cross-attention heads
    xattn_dim_head: int = 32               # gated: width of one head
    xattn_ff_mult: float = 0.25            # gated: hidden width of the block's FFW / LM width
    latents: int = 16                      # gated: resampler latents n per image (the keys/values the blocks read)
    resampler_dim: int = 128               # gated: resampler width d_v
    resampler_depth: int = 1               # gated: resampler layers
    prefill_repeats: int = 3               # prefill time: the minimum over this many runs of one prompt
    max_zoom: float = 3.0                  # crops: the artwork's short side shrunk to [S, max_zoom·S] first
    seed: int = 0                          # seeds crops, batches and initialisation
    threads: int = 1                       # torch threads
    out: str | None = None                 # output folder of `museumtok train formats` (results.json, results.md)


@dataclass
class FormatResult:
    format: str                            # prefix, interleaved, gated, or "frozen LM" / "majority" (floors)
    accuracy: dict[str, float]             # held-out accuracy per kind (guide.score)
    mean_accuracy: float                   # mean over the kinds
    trainable_params: int                  # parameters trained (the LM's are frozen)
    context_tokens: float                  # LM positions of one prompt (mean over the held-out prompts)
    visual_kv: int                         # visual keys/values read by each cross-attention block (gated; 0 else)
    prefill_ms: float                      # one prompt: visual path + LM forward to the answer's logits
    steps: int                             # optimiser steps done
    train_seconds: float                   # wall-clock training time
    examples: int                          # questions seen in training
    losses: list[float] = field(default_factory=list)   # training loss per step
    seconds: list[float] = field(default_factory=list)  # wall-clock seconds at each step's end


# ---- data ---------------------------------------------------------------------------------------------------
@dataclass
class Crops:
    codes: torch.Tensor                    # (N, M) image token indices
    facts: list[dict]                      # guide.visual_facts of each crop


def make_crops(tok, M: int, split: str, n: int, rng: random.Random, max_zoom: float = 3.0, entries_images=None) -> Crops:
    """``n`` random crops of one split's artworks: their codes under the frozen tokenizer and their visual facts."""
    from ..llm.guide import visual_facts
    from ..llm.sft_data import load_split, random_crops

    entries, images = entries_images or load_split(split, short_side=256)
    crops = random_crops(entries, images, n, tok.working_size(M), rng, max_zoom=max_zoom)
    x = torch.stack([c for _, c in crops])                                      # (N, 3, S, S)
    codes = []
    with torch.no_grad():
        for s in range(0, len(x), 128):
            codes.append(tok.encode_tensor(x[s:s + 128], M).reshape(len(x[s:s + 128]), -1))
    return Crops(torch.cat(codes).long(), [visual_facts(c) for c in x])


def answer_word(kind: str, facts: dict) -> str:
    return facts["colour"][0] if kind == "colour" else str(facts[kind])


# ---- the three formats --------------------------------------------------------------------------------------
def _mean_row(lm) -> torch.Tensor:
    return lm.get_input_embeddings().weight.detach().float().mean(0)           # (d,)


class _Format(nn.Module):
    """One way of putting a crop's codes into the frozen LM. Subclasses say what a prompt is made of."""

    name = "format"

    def __init__(self, lm, hf_tok):
        super().__init__()
        self.__dict__["lm"] = lm                  # not a submodule: its parameters are not this module's
        self.hf_tok = hf_tok

    def ids(self, text: str) -> list[int]:
        return self.hf_tok(text, add_special_tokens=False)["input_ids"]

    def segments(self, question: str) -> list:
        """The prompt as pieces: token-id lists, "IMG" (the image's embeddings) or "MARK" (a marker vector)."""
        raise NotImplementedError

    def image_embeds(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, M) codes -> (B, P, d): what "IMG" stands for (P positions)."""
        raise NotImplementedError

    def marker(self) -> torch.Tensor:
        raise NotImplementedError

    def build(self, codes: torch.Tensor, questions: Sequence[str], answers: Sequence[list[int]] | None = None):
        """inputs_embeds (B, L, d), attention_mask (B, L), labels (B, L) (-100 off the answer) and the index of
        each prompt's last position (B,), right-padded."""
        emb = self.lm.get_input_embeddings()
        d = emb.weight.shape[1]
        img = None
        rows, labs = [], []
        for b, q in enumerate(questions):
            parts = []
            for seg in self.segments(q):
                if isinstance(seg, str) and seg == "IMG":
                    if img is None:
                        img = self.image_embeds(codes)                             # (B, P, d)
                    parts.append(img[b])
                elif isinstance(seg, str) and seg == "MARK":
                    parts.append(self.marker().reshape(1, d))
                else:
                    parts.append(emb(torch.tensor(seg, dtype=torch.long)))
            n_prompt = sum(p.shape[0] for p in parts)
            lab = [-100] * n_prompt
            if answers is not None:
                parts.append(emb(torch.tensor(answers[b], dtype=torch.long)))
                lab += list(answers[b])
            rows.append(torch.cat(parts, 0))
            labs.append((lab, n_prompt))
        L = max(r.shape[0] for r in rows)
        E = torch.zeros(len(rows), L, d, dtype=emb.weight.dtype)
        att = torch.zeros(len(rows), L, dtype=torch.long)
        labels = torch.full((len(rows), L), -100, dtype=torch.long)
        last = torch.zeros(len(rows), dtype=torch.long)
        for b, (r, (lab, n_prompt)) in enumerate(zip(rows, labs)):
            E[b, :r.shape[0]] = r
            att[b, :r.shape[0]] = 1
            labels[b, :len(lab)] = torch.tensor(lab)
            last[b] = n_prompt - 1
        return E, att, labels, last

    def hidden(self, codes, E, att) -> torch.Tensor:
        return self.lm.model(inputs_embeds=E, attention_mask=att).last_hidden_state   # (B, L, d)

    def loss(self, codes, questions, answers) -> torch.Tensor:
        E, att, labels, _ = self.build(codes, questions, answers)
        h = self.hidden(codes, E, att)
        tgt = labels[:, 1:]
        keep = tgt != -100
        logits = self.lm.lm_head(h[:, :-1][keep])                                  # (N_answer, V) only
        return F.cross_entropy(logits.float(), tgt[keep])

    def candidate_loss(self, codes, questions, candidates: Sequence[list[int]], targets: Sequence[int]) -> torch.Tensor:
        """Cross-entropy over each question's candidate answers (single tokens; ids (C_b,) each) at the position
        after the prompt: the ranking the evaluation does, as a loss."""
        E, att, _, last = self.build(codes, questions)
        h = self.hidden(codes, E, att)[torch.arange(len(last)), last]               # (B, d)
        W = self.lm.lm_head.weight
        return torch.stack([F.cross_entropy((W[c] @ h[b]).float().unsqueeze(0), torch.tensor([t]))
                            for b, (c, t) in enumerate(zip(candidates, targets))]).mean()

    @torch.no_grad()
    def next_logits(self, codes, questions) -> tuple[torch.Tensor, int]:
        """Logits (B, V) of the token after each prompt, and the prompts' mean length in LM positions."""
        E, att, _, last = self.build(codes, questions)
        h = self.hidden(codes, E, att)
        return self.lm.lm_head(h[torch.arange(len(last)), last]).float(), float((last + 1).float().mean())

    @torch.no_grad()
    def answer_logprob(self, codes, questions, answers) -> torch.Tensor:
        """(B,) summed log-probability of each answer's tokens after its prompt."""
        E, att, labels, _ = self.build(codes, questions, answers)
        h = self.hidden(codes, E, att)
        lp = torch.log_softmax(self.lm.lm_head(h[:, :-1]).float(), -1)             # (B, L-1, V)
        tgt = labels[:, 1:]
        keep = tgt != -100
        got = lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)            # (B, L-1)
        return (got * keep).sum(-1)

    def visual_kv(self) -> int:
        return 0

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, lr: float, gate_lr: float) -> list[dict]:
        return [{"params": self.trainable(), "lr": lr}]


class PrefixFormat(_Format):
    """``<image> e_1 … e_M </image>`` before the question (``interleaved``: after it, where it points)."""

    def __init__(self, lm, hf_tok, table: torch.Tensor, M: int, interleaved: bool = False):
        super().__init__(lm, hf_tok)
        self.name = "interleaved" if interleaved else "prefix"
        self.interleaved = interleaved
        W = lm.get_input_embeddings().weight.detach().float()
        d = W.shape[1]
        self.features = CodeFeatures(table, M)
        self.proj = nn.Linear(table.shape[1], d)
        with torch.no_grad():          # start at the LM's embedding scale, centred on its mean row
            out_std = float(self.proj(self.features.table).std())
            self.proj.weight.mul_(float(W.std()) / max(out_std, 1e-8))
            self.proj.bias.copy_(W.mean(0))
        self.delims = nn.Parameter(_mean_row(lm).repeat(2, 1))                    # <image>, </image>  (2, d)

    def segments(self, question):
        if self.interleaved:
            return [self.ids(f"Visitor: {question} "), "IMG", self.ids("\nGuide:")]
        return ["IMG", self.ids(f"\nVisitor: {question}\nGuide:")]

    def image_embeds(self, codes):
        z = self.proj(self.features(codes))                                         # (B, M, d)
        B = z.shape[0]
        return torch.cat([self.delims[0].expand(B, 1, -1), z, self.delims[1].expand(B, 1, -1)], 1)  # (B, M+2, d)


class GatedFormat(_Format):
    """One ``<image>`` marker in the context; the codes reach the LM only through gated cross-attention."""

    name = "gated"

    def __init__(self, lm, hf_tok, table: torch.Tensor, M: int, cfg: FormatsConfig):
        super().__init__(lm, hf_tok)
        self.visual = CodeResampler(table, M, ResamplerConfig(dim=cfg.resampler_dim, num_latents=cfg.latents,
                                                              depth=cfg.resampler_depth, heads=4, ff_mult=2))
        # the <image> marker: the LM's mean embedding row, frozen, so no gradient has to run below the first block
        self.register_buffer("mark", _mean_row(lm).reshape(1, -1).to(lm.get_input_embeddings().weight.dtype))  # (1, d)
        n_layers = lm.config.num_hidden_layers      # a tiny test LM may have fewer layers than `every`
        gx = GatedXAttnLM(lm, GatedXAttnConfig(every=min(cfg.every, n_layers), heads=cfg.xattn_heads,
                                               dim_head=cfg.xattn_dim_head, ff_mult=cfg.xattn_ff_mult,
                                               visual_dim=cfg.resampler_dim))
        self.__dict__["gx"] = gx                  # the hooks' owner (holds the LM): not a submodule here
        self.blocks = gx.blocks                                                     # registered here: trained
        self._latents = cfg.latents

    def segments(self, question):
        return ["MARK", self.ids(f"\nVisitor: {question}\nGuide:")]

    def marker(self):
        return self.mark

    def hidden(self, codes, E, att):
        latents = self.visual(codes)                                                # (B, n, d_v)
        at_marker = torch.zeros(E.shape[:2], dtype=torch.bool)                      # (B, L): the image starts at 0
        at_marker[:, 0] = True
        with self.gx.conditioned(latents, at_marker):
            return self.lm.model(inputs_embeds=E, attention_mask=att).last_hidden_state

    def visual_kv(self) -> int:
        return self._latents

    def param_groups(self, lr, gate_lr):
        gates = [b.attn_gate for b in self.blocks.values()] + [b.ff_gate for b in self.blocks.values()]
        ids = {id(p) for p in gates}
        return [{"params": [p for p in self.trainable() if id(p) not in ids], "lr": lr},
                {"params": gates, "lr": gate_lr}]

    def remove(self):
        self.gx.remove()


# ---- training and evaluation ----------------------------------------------------------------------------
def _answer_ids(hf_tok, word: str) -> list[int]:
    return hf_tok(" " + word, add_special_tokens=False)["input_ids"]


def candidate_ids(hf_tok, kinds) -> dict[str, list[list[int]]]:
    """Token ids of each candidate answer (" blue", …) of each kind."""
    return {k: [_answer_ids(hf_tok, c) for c in CANDIDATES[k]] for k in kinds}


def _single_tokens(cands: list[list[int]]) -> bool:
    """True when every candidate is one token, all different: one forward ranks them (SmolLM2's case)."""
    return all(len(c) == 1 for c in cands) and len({c[0] for c in cands}) == len(cands)


def eval_questions(kinds: Sequence[str], n: int) -> list[tuple[int, str, str]]:
    """(crop index, kind, held-out phrasing) for every crop and kind, phrasings taken in turn."""
    from ..llm.guide import PHRASINGS

    return [(i, k, PHRASINGS[k]["heldout"][(i + j) % len(PHRASINGS[k]["heldout"])])
            for i in range(n) for j, k in enumerate(kinds)]


def train_batches(kinds: Sequence[str], n_crops: int, batch: int, seed: int):
    """The t-th batch of (crop index, kind, training phrasing): the same for every format."""
    from ..llm.guide import PHRASINGS

    def at(t: int):
        r = random.Random(seed * 100_003 + t)
        out = []
        for _ in range(batch):
            k = r.choice(list(kinds))
            out.append((r.randrange(n_crops), k, r.choice(PHRASINGS[k]["train"])))
        return out
    return at


@torch.no_grad()
def evaluate(fmt: "_Format", crops: Crops, kinds: Sequence[str], cands: dict[str, list[list[int]]],
             batch: int = 16) -> tuple[dict[str, float], float]:
    """Held-out accuracy per kind (the most likely candidate answer, scored by guide.score) and the prompts'
    mean length in LM positions. Single-token candidates are ranked by one forward; others by their summed
    log-likelihood (one forward per candidate)."""
    from ..llm.guide import score

    fmt.eval()
    qs = eval_questions(kinds, len(crops.facts))
    right: dict[str, list[float]] = {k: [] for k in kinds}
    lengths = []
    for s in range(0, len(qs), batch):
        chunk = qs[s:s + batch]
        codes = crops.codes[[i for i, _, _ in chunk]]
        questions = [q for _, _, q in chunk]
        logits, n = fmt.next_logits(codes, questions)
        lengths.append((n, len(chunk)))
        for k in kinds:
            rows = [b for b, (_, kk, _) in enumerate(chunk) if kk == k]
            if not rows:
                continue
            if _single_tokens(cands[k]):
                first = [c[0] for c in cands[k]]
                best = logits[rows][:, first].argmax(-1)                             # (b,)
            else:
                lp = torch.stack([fmt.answer_logprob(codes[rows], [questions[b] for b in rows], [c] * len(rows))
                                  for c in cands[k]], -1)                           # (b, C)
                best = lp.argmax(-1)
            for b, j in zip(rows, best.tolist()):
                i = chunk[b][0]
                right[k].append(score(k, CANDIDATES[k][j], crops.facts[i], None)[SCORE_KEY[k]])
    fmt.train()
    acc = {k: sum(v) / len(v) for k, v in right.items()}
    return acc, sum(n * c for n, c in lengths) / max(1, sum(c for _, c in lengths))


@torch.no_grad()
def prefill_ms(fmt: _Format, codes: torch.Tensor, question: str, repeats: int = 3) -> float:
    """Milliseconds of one prompt (batch 1): the visual path, the embeddings and the LM's forward to the
    next-token logits; the minimum over ``repeats``."""
    fmt.eval()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fmt.next_logits(codes[:1], [question])
        best = min(best, time.perf_counter() - t0)
    fmt.train()
    return 1e3 * best


def build_format(name: str, lm, hf_tok, table: torch.Tensor, cfg: FormatsConfig) -> _Format:
    torch.manual_seed(cfg.seed)
    if name in ("prefix", "interleaved"):
        return PrefixFormat(lm, hf_tok, table, cfg.M, interleaved=name == "interleaved")
    if name == "gated":
        return GatedFormat(lm, hf_tok, table, cfg.M, cfg)
    raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")


def train_format(fmt: _Format, train: Crops, cfg: FormatsConfig, hf_tok, log=print) -> tuple[list[float], list[float], int, float]:
    """Train ``fmt`` on the project's :class:`~museumtok.train.harness.Harness` for ``cfg.max_steps`` steps or
    ``cfg.max_seconds``, whichever ends first, at a constant learning rate (each format the same way).
    Returns (losses, seconds at each step, steps, training seconds)."""
    from .harness import Harness

    opt = torch.optim.AdamW(fmt.param_groups(cfg.lr, cfg.gate_lr), weight_decay=0.0)
    at = train_batches(cfg.kinds, len(train.facts), cfg.batch, cfg.seed)
    cands = candidate_ids(hf_tok, cfg.kinds)
    if cfg.loss not in ("candidates", "lm"):
        raise ValueError(f"loss must be 'candidates' or 'lm', got {cfg.loss!r}")
    use_candidates = cfg.loss == "candidates" and all(_single_tokens(c) for c in cands.values())

    def step_fn(model: _Format, b, step: int):
        codes = train.codes[[i for i, _, _ in b]].to(next(model.parameters()).device)
        questions = [q for _, _, q in b]
        if use_candidates:
            loss = model.candidate_loss(codes, questions, [[c[0] for c in cands[k]] for _, k, _ in b],
                                        [CANDIDATES[k].index(answer_word(k, train.facts[i])) for i, k, _ in b])
        else:
            answers = [_answer_ids(hf_tok, answer_word(k, train.facts[i])) for i, k, _ in b]
            loss = model.loss(codes, questions, answers)
        return loss, {"loss": loss}

    def on_log(row: dict) -> None:
        if log and (row["step"] == 1 or row["step"] % 10 == 0):
            log(f"  {fmt.name}: step {row['step']}, loss {row['loss']:.3f}, {row['wall_s']:.0f} s")

    h = Harness(fmt, opt, steps=cfg.max_steps, max_minutes=cfg.max_seconds / 60, min_lr_ratio=1.0,  # constant lr
                log_every=1, on_log=on_log, device="cpu", desc=fmt.name)   # CPU: the table compares CPU prefill times
    res = h.fit(step_fn, at)                   # ends with fmt.eval(): the frozen LM as loaded
    return [r["loss"] for r in h.history], [r["wall_s"] for r in h.history], res["steps"], res["wall_time_s"]


def load_llm(spec: str = "embedded", seed: int = 0):
    """(frozen causal LM in eval mode, its HF tokenizer): the embedded SmolLM2 or a tiny random Llama."""
    if spec == "tiny":
        from ..llm.sft import tiny_llama

        lm, hf_tok = tiny_llama(seed=seed, hidden=32, layers=4)
    elif spec == "embedded":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..llm.backends import convert_embedded

        path = convert_embedded()
        lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        hf_tok = AutoTokenizer.from_pretrained(str(path))
    else:
        raise ValueError(f"llm must be 'embedded' or 'tiny', got {spec!r}")
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    return lm, hf_tok


def compare_formats(cfg: FormatsConfig, lm=None, hf_tok=None, log=print, data=None) -> list[FormatResult]:
    """Train and measure each of ``cfg.formats`` on the guide's visual questions; the first rows are the
    floors: the majority answer and the frozen LM alone (= the gated model at step 0, exactly)."""
    from ..registry import load

    torch.set_num_threads(cfg.threads)
    log = log or (lambda *a, **k: None)
    if lm is None:
        lm, hf_tok = load_llm(cfg.llm, cfg.seed)
    tok = load(cfg.tokenizer)
    table = code_table(tok)
    rng = random.Random(cfg.seed)
    train, test = data or (make_crops(tok, cfg.M, "train", cfg.train_crops, rng, cfg.max_zoom),
                           make_crops(tok, cfg.M, "test", cfg.eval_crops, rng, cfg.max_zoom))
    cands = candidate_ids(hf_tok, cfg.kinds)
    q0 = eval_questions(cfg.kinds, 1)[0][2]
    results: list[FormatResult] = []

    # floor 1: always answer the most common training answer of the kind
    acc = {}
    for k in cfg.kinds:
        common = Counter(answer_word(k, f) for f in train.facts).most_common(1)[0][0]
        acc[k] = sum(answer_word(k, f) == common for f in test.facts) / len(test.facts)
    results.append(FormatResult("majority answer", acc, sum(acc.values()) / len(acc), 0, 0.0, 0, 0.0, 0, 0.0, 0))

    for name in cfg.formats:
        fmt = build_format(name, lm, hf_tok, table, cfg)
        if name == "gated":      # floor 2: the gates are 0, so this is the frozen LM reading text only
            acc, ctx = evaluate(fmt, test, cfg.kinds, cands)
            results.append(FormatResult("frozen LM (gated, step 0)", acc, sum(acc.values()) / len(acc), 0, ctx,
                                        0, prefill_ms(fmt, test.codes, q0, cfg.prefill_repeats), 0, 0.0, 0))
        log(f"{name}: training ({sum(p.numel() for p in fmt.trainable()):,} trainable parameters)")
        losses, secs, steps, dt = train_format(fmt, train, cfg, hf_tok, log)
        acc, ctx = evaluate(fmt, test, cfg.kinds, cands)
        ms = prefill_ms(fmt, test.codes, q0, cfg.prefill_repeats)
        results.append(FormatResult(name, acc, sum(acc.values()) / len(acc),
                                    sum(p.numel() for p in fmt.trainable()), ctx, fmt.visual_kv(), ms, steps, dt,
                                    steps * cfg.batch, losses, secs))
        log(f"{name}: accuracy {results[-1].mean_accuracy:.3f} after {steps} steps ({dt:.0f} s)")
        if isinstance(fmt, GatedFormat):
            fmt.remove()
    return results


def results_table(results: Sequence[FormatResult]) -> str:
    """A markdown table of the results."""
    kinds = list(results[0].accuracy)
    head = ("| format | " + " | ".join(f"{k} acc." for k in kinds) + " | mean | trainable params | context tokens"
            " | visual k/v per block | prefill ms | steps | train s |")
    rows = [head, "|" + "---|" * (len(kinds) + 8)]
    for r in results:
        rows.append(f"| {r.format} | " + " | ".join(f"{r.accuracy[k]:.2f}" for k in kinds)
                    + f" | {r.mean_accuracy:.2f} | {r.trainable_params:,} | {r.context_tokens:.0f} | {r.visual_kv} | "
                    f"{r.prefill_ms:.0f} | {r.steps} | {r.train_seconds:.0f} |")
    return "\n".join(rows)


@register_trainer("formats", FormatsConfig, "prefix vs interleaved vs gated cross-attention on the guide's questions (§6.1)")
def run(cfg: FormatsConfig, command: str = "museumtok train formats") -> Path:
    from ..paths import cache_dir

    out = Path(cfg.out) if cfg.out else cache_dir("formats")
    out.mkdir(parents=True, exist_ok=True)
    res = compare_formats(cfg)
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "command": command,
                                                  "results": [asdict(r) for r in res]}, indent=1))
    (out / "results.md").write_text(f"`{command}`\n\n{results_table(res)}\n")
    print(results_table(res))
    return out
