"""``museumtok train sft``: LoRA SFT of the embedded LLM on image-token QA (§7.2–7.3), with an ablation.

Trains on random crops of the TRAIN artworks; evaluates on crops of the held-out TEST artworks
(pixel questions) with the real tokens, the same tokens shuffled, and no image, plus catalog facts
on fresh crops of the training works. Writes the adapter (a few MB) and its card.
"""
from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..llm.sft import adapter_name
from . import register_trainer


@dataclass
class SFTConfig:
    tokenizer: str = "lloyd-patch-k1024"   # frozen image tokenizer (registry name)
    llm: str = "embedded"                  # base LLM: "embedded" (SmolLM2 on CPU) or "hf:<path or Hub id>" (CUDA bf16 on a GPU)
    M: int = 64                            # image tokens per crop (short sequences on CPU)
    init: str = "words"                    # image rows start as "mean" (HF default) or as each code's colour "words"
    r: int = 8                             # LoRA rank
    alpha: int = 16                        # LoRA alpha (scale alpha / r)
    lr: float = 5e-4                       # AdamW learning rate of the LoRA factors
    emb_lr: float = 2e-3                   # AdamW learning rate of the image-row delta ΔE
    batch: int = 8                         # dialogues (crops) per step
    steps: int = 400                       # maximum optimiser steps
    max_minutes: float = 12.0              # stop training after this wall time (whichever first)
    train_crops: int = 800                 # random training crops (each gives one multi-turn dialogue)
    catalog_frac: float = 0.3              # probability a crop's dialogue also asks each catalog question
    eval_crops: int = 30                   # held-out test-split crops for the pixel questions
    eval_catalog_crops: int = 20           # fresh crops of training works for the catalog questions
    seed: int = 0                          # seeds crops, shuffles and init
    threads: int = 1                       # torch threads (1 on the shared CPU box)
    out: str | None = None                 # output folder; default data/checkpoints/sft-<llm>-<tokenizer family>
    log: str | None = None                 # JSON-lines loss log path (optional)


def make_examples(cfg: SFTConfig, tok, split: str, n_crops: int, kinds, rng: random.Random, entries_images=None):
    from ..llm.sft_data import build_examples, load_split, random_crops

    entries, images = entries_images or load_split(split)
    crops = random_crops(entries, images, n_crops, tok.working_size(cfg.M), rng)
    return build_examples(crops, tok, cfg.M, kinds=kinds)


def evaluate(pm, hf_tok, vocab, pixel_ex, catalog_ex, titles, artists, seed: int = 0) -> list[dict]:
    """Accuracy table: pixel kinds × {real, shuffled, none} + catalog kinds; chance and majority alongside."""
    from ..llm.sft import pick, prompt_ids
    from ..llm.sft_data import CANDIDATES

    rows = []
    pm.eval()
    groups: dict[str, list] = {}
    for ex in pixel_ex + catalog_ex:
        groups.setdefault(ex.kind, []).append(ex)
    for kind, exs in groups.items():
        cands = CANDIDATES.get(kind) or (tuple(titles) if kind == "title" else tuple(artists))
        maj = Counter(e.answer for e in exs).most_common(1)[0][1] / len(exs)
        row = {"question": kind, "n": len(exs), "chance": 1 / len(cands), "majority": maj}
        for cond in (("real", "shuffled", "none") if kind in CANDIDATES else ("real", "none")):
            rng = random.Random(seed)
            hits = sum(pick(pm, prompt_ids(e, hf_tok, vocab, cond, rng), cands, hf_tok) == e.answer for e in exs)
            row[cond] = hits / len(exs)
        rows.append(row)
    return rows


@register_trainer("sft", SFTConfig, "LoRA SFT of the embedded LLM to read image tokens, with an ablation (§7)")
def train(cfg: SFTConfig, command: str = "museumtok train sft") -> Path:
    import museumtok
    from ..cards import markdown_table, write_model_card
    from ..llm.backend import TransformersBackend, make_backend
    from ..llm.sft import (AdapterConfig, add_adapter, code_words, collate, encode_dialogue, save_adapter, sft_loss,
                           trainable_parameters, word_init_delta)
    from ..llm.sft_data import CATALOG_KINDS, PIXEL_KINDS, load_split
    from ..llm.vocab import ImageVocab
    from ..paths import CHECKPOINT_DIR

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.time()
    tok = museumtok.load(cfg.tokenizer)
    backend = make_backend(cfg.llm)
    if not isinstance(backend, TransformersBackend):
        raise ValueError(f"--llm {cfg.llm!r} is not a local transformers model; SFT needs its weights")
    model, hf_tok = backend.model, backend.tokenizer
    vocab = ImageVocab.for_tokenizer(cfg.tokenizer, tok.K)
    vocab.attach(model, hf_tok)
    acfg = AdapterConfig(r=cfg.r, alpha=cfg.alpha, tokenizer=cfg.tokenizer, K=tok.K, M=cfg.M, base=backend.name)
    pm, delta = add_adapter(model, vocab, acfg)
    if cfg.init == "words":
        word_init_delta(pm, delta, hf_tok, code_words(tok, cfg.M))
    elif cfg.init != "mean":
        raise ValueError(f"init must be 'mean' or 'words', got {cfg.init!r}")

    train_split = load_split("train")
    train_ex = make_examples(cfg, tok, "train", cfg.train_crops, PIXEL_KINDS + CATALOG_KINDS, rng, train_split)
    by_crop: dict[int, list] = {}
    for e in train_ex:
        by_crop.setdefault(e.crop, []).append(e)
    pool = []                                   # one dialogue per crop: its pixel questions (+ catalog ones sometimes)
    for exs in by_crop.values():
        d = [e for e in exs if e.kind in PIXEL_KINDS] + [e for e in exs if e.kind in CATALOG_KINDS
                                                         and rng.random() < cfg.catalog_frac]
        rng.shuffle(d)
        pool.append(d)
    pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else hf_tok.eos_token_id
    enc = [encode_dialogue(d, hf_tok, vocab) for d in pool]

    lora = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora, "lr": cfg.lr}, {"params": [delta.delta], "lr": cfg.emb_lr}],
                            weight_decay=0.0)
    n_train = sum(p.numel() for p in trainable_parameters(pm, delta))
    losses = []
    t_train = time.time()
    log = open(cfg.log, "a") if cfg.log else None
    pm.train()
    step = 0
    for step in range(1, cfg.steps + 1):
        i = ((step - 1) * cfg.batch) % len(enc)
        batch = collate(enc[i:i + cfg.batch] or enc[:cfg.batch], pad)
        loss = sft_loss(pm, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable_parameters(pm, delta), 1.0)
        opt.step()
        losses.append(loss.item())
        if log:
            log.write(json.dumps({"step": step, "loss": losses[-1], "t": time.time() - t_train}) + "\n")
            log.flush()
        if time.time() - t_train > cfg.max_minutes * 60:
            break
    train_s = time.time() - t_train

    name = adapter_name(backend.name, cfg.tokenizer)
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    acfg.extra = {"steps": step, "dialogues_seen": step * cfg.batch, "trainable_parameters": n_train}
    save_adapter(out, pm, delta, acfg)

    # ---- evaluation --------------------------------------------------------------------------------
    t_eval = time.time()
    erng = random.Random(cfg.seed + 1)
    test_ex = make_examples(cfg, tok, "test", cfg.eval_crops, PIXEL_KINDS, erng)
    cat_ex = make_examples(cfg, tok, "train", cfg.eval_catalog_crops, CATALOG_KINDS, erng, train_split)
    titles = sorted({e.title for e in train_split[0]})
    artists = sorted({e.artist for e in train_split[0]})
    rows = evaluate(pm, hf_tok, vocab, test_ex, cat_ex, titles, artists, cfg.seed)
    eval_s = time.time() - t_eval
    wall = time.time() - t0
    (out / "losses.json").write_text(json.dumps(losses))
    curve = ", ".join(f"{l:.3f}" for l in losses[:: max(1, len(losses) // 12)])
    write_model_card(
        out, name,
        summary=(f"LoRA adapter (r={cfg.r}, alpha={cfg.alpha}, q/k/v/o projections) plus a trainable delta on the "
                 f"{tok.K + 2} image-token embedding rows of SmolLM2-135M-Instruct, so that it reads "
                 f"`{cfg.tokenizer}` image tokens (M={cfg.M}); tokenizer and base weights frozen (§7.2–7.3). "
                 + ("Image rows start as the embedding of each codeword's colour word (`--init words`: code k's "
                    "decoded patch → its dominant palette colour → that word's embedding). " if cfg.init == "words"
                    else "Image rows start as the mean embedding (`--init mean`). ") +
                 f"{n_train:,} trainable parameters. Load with `museumtok.llm.sft.load_adapter`."),
        data=(f"{sum(map(len, pool))} QA pairs in {len(pool)} dialogues from {cfg.train_crops} random crops (scale, crop, flip) of the "
              f"{len(train_split[0])} TRAIN-split artworks; answers computed from the pixels (dominant colour, "
              f"bright/dark, warm/cool, brightest side) + catalog title/artist ({cfg.catalog_frac:.0%}); "
              f"prompts in §7.3's form `<image>…</image>\\nVisitor: …\\nGuide: answer` (one crop = one multi-turn dialogue)"),
        steps=f"{step} AdamW steps × batch {cfg.batch} ({step * cfg.batch} dialogues, "
              f"{step * cfg.batch / max(1, len(pool)):.2f} epochs); loss every ~{max(1, len(losses) // 12)} steps: {curve}",
        wall_time_s=wall, metrics=rows, command=command,
        extra=(f"\nAccuracy by ranking the candidate answers' log-likelihoods. Pixel questions on {cfg.eval_crops} "
               f"random crops of the {len(load_split('test')[0]) if False else 'held-out TEST-split'} artworks "
               f"(never trained on): `real` = the crop's tokens, `shuffled` = the same tokens in a random order, "
               f"`none` = no image. Catalog questions on {cfg.eval_catalog_crops} fresh crops of training works "
               f"(candidates: all training titles / artists). `chance` = 1/#candidates, `majority` = the most "
               f"frequent answer's share in the evaluation set. Training {train_s:.0f} s, evaluation {eval_s:.0f} s.\n"),
    )
    if log:
        log.close()
    return out


def evaluate_adapter(directory: Path, eval_crops: int = 30, seed: int = 1) -> list[dict]:
    """Re-run the pixel-question ablation of a saved adapter on ``eval_crops`` held-out TEST crops."""
    import museumtok
    from ..llm.backend import TransformersBackend
    from ..llm.sft import load_adapter
    from ..llm.sft_data import PIXEL_KINDS

    b = TransformersBackend.embedded()
    pm, delta, vocab, acfg = load_adapter(Path(directory), b.model, b.tokenizer)
    tok = museumtok.load(acfg.tokenizer)
    cfg = SFTConfig(tokenizer=acfg.tokenizer, M=acfg.M)
    test_ex = make_examples(cfg, tok, "test", eval_crops, PIXEL_KINDS, random.Random(seed))
    return evaluate(pm, b.tokenizer, vocab, test_ex, [], [], [], seed)


def evaluate_untrained(init: str = "words", tokenizer: str = "lloyd-patch-k1024", M: int = 64, eval_crops: int = 30,
                       seed: int = 1) -> list[dict]:
    """The same held-out ablation for the base LLM with image rows initialised but nothing trained
    (LoRA factors B = 0, ΔE = the init): how much of the adapter's score the initialisation alone gives."""
    import museumtok
    from ..llm.backend import TransformersBackend
    from ..llm.sft import AdapterConfig, add_adapter, code_words, word_init_delta
    from ..llm.sft_data import PIXEL_KINDS
    from ..llm.vocab import ImageVocab

    tok = museumtok.load(tokenizer)
    b = TransformersBackend.embedded()
    vocab = ImageVocab.for_tokenizer(tokenizer, tok.K)
    vocab.attach(b.model, b.tokenizer)
    pm, delta = add_adapter(b.model, vocab, AdapterConfig(tokenizer=tokenizer, K=tok.K, M=M))
    if init == "words":
        word_init_delta(pm, delta, b.tokenizer, code_words(tok, M))
    elif init != "mean":
        raise ValueError(f"init must be 'mean' or 'words', got {init!r}")
    cfg = SFTConfig(tokenizer=tokenizer, M=M)
    test_ex = make_examples(cfg, tok, "test", eval_crops, PIXEL_KINDS, random.Random(seed))
    return evaluate(pm, b.tokenizer, vocab, test_ex, [], [], [], seed=0)
