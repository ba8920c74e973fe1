"""``museumtok train sft``: LoRA SFT of the embedded LLM into a museum guide that reads image tokens
(§7.1–7.3, version 2 of the adapter format).

Data (:mod:`museumtok.llm.guide`): random crops of the TRAIN artworks, tokenized once by the frozen image
tokenizer; each training dialogue is one crop with, at random, its catalog card or the "not in the
catalog" line, and three Visitor/Guide turns whose answers are sentences built from the crop's pixels
(colour, brightness, warmth, where the light falls, top/bottom colours), copied from the card (title,
artist, date, medium), refusals, and 2–3 sentence descriptions; English and Vietnamese phrasings. Some
dialogues hold no image, so the guide learns to say it cannot see rather than guess.

Data mix (§7.1, ``--mix``): the review mixes domains at fixed shares (art 30%, documents 20%, everyday
photos 20%, …). ``--mix artworks=0.8,photos=0.15,documents=0.05`` draws each dialogue's image source with
those probabilities (i.i.d. per dialogue, from the step's seeded RNG; shares are normalised) from
:data:`MIX_SOURCES`, every one of them disjoint from what ``museumtok eval chat`` asks about (TEST
artworks, Kodak, its ten scikit-image photos). Photos and documents are in no catalog, so their
dialogues carry the "not in the catalog" line and the guide learns to say it does not know the work.
The default ``artworks=1`` draws nothing extra, so its batches are exactly those of earlier runs.

Training is resumable (``--resume``: the adapter, optimiser, step and loss log live in a state folder
under the cache; the data of step t is a function of (seed, t), so a resumed run sees what an unbroken
one would). ``museumtok eval chat --adapter <folder> --write-card`` measures the result.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..llm.sft import adapter_name
from . import register_trainer
from .harness import STATE_DIR, Harness, RunLog, load_optimizer_tensors, save_state


@dataclass
class SFTConfig:
    tokenizer: str = "lloyd-patch-k1024"   # frozen image tokenizer (registry name)
    llm: str = "embedded"                  # base LLM: "embedded" (SmolLM2 on CPU) or "hf:<path or Hub id>" (CUDA bf16 on a GPU)
    M: int = 64                            # image tokens per crop in training (short sequences on CPU)
    init: str = "words"                    # image rows start as "mean" (HF default) or as each code's colour "words"
    r: int = 16                            # LoRA rank
    alpha: int = 32                        # LoRA alpha (scale alpha / r)
    lr: float = 5e-4                       # peak AdamW learning rate of the LoRA factors
    emb_lr: float = 2e-3                   # peak AdamW learning rate of ΔE and the position embedding
    warmup: int = 20                       # linear warm-up steps, then cosine decay to 10% at `steps`
    batch: int = 8                         # dialogues (crops) per step
    steps: int = 1200                      # total optimiser steps of the run, resumed segments included
    max_minutes: float = 60.0              # stop this segment after this wall time (resume later)
    stop_after: int | None = None          # stop this segment at this step, the schedule unchanged (resume later)
    pool_crops: int = 3000                 # random TRAIN crops tokenized once at the start
    turns: int = 3                         # Visitor/Guide turns per dialogue
    card_frac: float = 0.6                 # share of dialogues whose prompt holds the work's catalog card
    no_image_frac: float = 0.08            # share of dialogues without image tokens (the guide says it cannot see)
    vi_share: float = 0.25                 # share of questions asked in Vietnamese
    mix: str = "artworks=1"                # §7.1 domain mix "source=share,…" over MIX_SOURCES (normalised)
    pos2d: int = 8                         # bins per axis of the 2-D position embedding (0: none)
    row_ends: bool = True                  # a "\n" token after each grid row (Chameleon/Emu3 style)
    bf16: bool = True                      # bf16 autocast (weights stay fp32); on CPUs with bf16 units only
    save_every: int = 25                   # save the adapter and the training state every this many steps
    resume: bool = False                   # continue the run in `out` from its saved state
    seed: int = 0                          # seeds crops, dialogues and init
    threads: int = 2                       # torch threads
    out: str | None = None                 # output folder; default data/checkpoints/sft-<llm>-<tokenizer family>
    log: str | None = None                 # JSON-lines loss log path (optional; the state keeps one too)
    # version-1 evaluation helpers below (candidate ranking) read these
    eval_crops: int = 30                   # held-out crops for `evaluate_adapter` (version-1 ablation)


def cpu_has_bf16() -> bool:
    """True when the CPU advertises AVX-512 BF16 or AMX (where bf16 autocast pays off)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


@dataclass
class Crop:
    entry: object                 # CatalogEntry of the artwork (None: an image in no catalog)
    indices: torch.Tensor         # (h, w) token grid of the crop
    facts: dict                   # guide.visual_facts of the crop's pixels


#: §7.1 data-mix sources: name -> what it is. None is an image ``museumtok eval chat`` asks about.
MIX_SOURCES: dict[str, str] = {
    "artworks": "random crops of the TRAIN-split artworks (their card in the prompt for card_frac of the dialogues)",
    "photos": "random crops of scikit-image's bundled photographs that the chat evaluation does not use",
    "documents": "random crops of scikit-image's scanned text pages (§7.1's document domain)",
}
#: scikit-image images (bundled, no download) per source; disjoint from eval.chat.OTHER_IMAGES (a test checks
#: names and pixels: skimage's ``cat`` is ``chelsea``, so it is not here)
SKIMAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "photos": ("stereo_motorcycle", "moon", "coins", "clock", "brick", "grass", "gravel", "cell"),
    "documents": ("page", "text"),
}


def parse_mix(spec: str) -> dict[str, float]:
    """"artworks=0.7,photos=0.3" -> {"artworks": 0.7, "photos": 0.3}, normalised to sum to 1; zero shares dropped."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        name, eq, val = part.partition("=")
        name = name.strip()
        if name not in MIX_SOURCES:
            raise ValueError(f"unknown mix source {name!r}; known: {', '.join(MIX_SOURCES)}")
        if name in out:
            raise ValueError(f"mix source {name!r} given twice")
        try:
            share = float(val) if eq else 1.0
        except ValueError:
            raise ValueError(f"mix share of {name!r} must be a number, got {val!r}") from None
        if not share >= 0:
            raise ValueError(f"mix share of {name!r} must be ≥ 0, got {val!r}")
        out[name] = share
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"mix {spec!r} gives no source a positive share")
    return {k: v / total for k, v in out.items() if v > 0}


def mix_description(spec: str) -> str:
    """The mix as the adapter card states it: "artworks 80% (…), photos 20% (…)"."""
    return ", ".join(f"{k} {v:.0%} ({MIX_SOURCES[k]})" for k, v in parse_mix(spec).items())


def skimage_images(source: str) -> list:
    """The PIL images of a scikit-image source (RGB; grey images repeated on three channels)."""
    import numpy as np
    import skimage.data as skd
    from PIL import Image

    out = []
    for name in SKIMAGE_SOURCES[source]:
        a = getattr(skd, name)()
        a = np.asarray(a[0] if isinstance(a, tuple) else a)     # stereo_motorcycle: (left, right, disparity)
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        if a.dtype != np.uint8:
            a = (255 * (a.astype(np.float64) / max(1.0, float(a.max())))).astype(np.uint8)
        out.append(Image.fromarray(a[..., :3]).convert("RGB"))
    return out


def crop_pool(tok, M: int, n: int, seed: int, split: str = "train", batch: int = 64, source: str = "artworks") -> list[Crop]:
    """``n`` random crops of one split (``source="artworks"``) or one scikit-image source of :data:`MIX_SOURCES`
    at the tokenizer's working size for M, tokenized (frozen) once."""
    from ..llm.guide import visual_facts
    from ..llm.sft_data import load_split, random_crops

    if source == "artworks":
        entries, images = load_split(split)
    else:
        images = skimage_images(source)
        entries = [None] * len(images)
    crops = random_crops(entries, images, n, tok.working_size(M), random.Random(seed))
    out: list[Crop] = []
    for s in range(0, n, batch):
        chunk = crops[s:s + batch]
        with torch.no_grad():
            idx = tok.encode_tensor(torch.stack([c for _, c in chunk]), M)          # (B, h, w)
        out += [Crop(e, i.clone(), visual_facts(c)) for (e, c), i in zip(chunk, idx)]
    return out


def source_pools(cfg: SFTConfig, tok) -> dict[str, list[Crop]]:
    """One crop pool per source of ``cfg.mix``: ``pool_crops`` crops shared by share (at least 64 each); the
    artworks' pool of a single-source mix is exactly the pool of earlier runs."""
    mix = parse_mix(cfg.mix)
    if list(mix) == ["artworks"]:
        return {"artworks": crop_pool(tok, cfg.M, cfg.pool_crops, cfg.seed)}
    return {name: crop_pool(tok, cfg.M, max(64, round(cfg.pool_crops * share)), cfg.seed + 7919 * i, source=name)
            for i, (name, share) in enumerate(mix.items())}


@dataclass
class Draw:
    source: str                   # the mix source the dialogue's image came from
    crop: Crop
    card: object | None           # guide.Card in the prompt, or None ("not in the catalog")
    seen: bool                    # image tokens in the prompt
    turns: list                   # (question, answer) pairs


def draw_batch(cfg: SFTConfig, pools: dict[str, list[Crop]] | list[Crop], step: int) -> list[Draw]:
    """The dialogues of training step ``step`` (a pure function of (cfg.seed, step)): per dialogue a source
    drawn with the mix's shares, a crop of its pool, the card, whether the image is shown, the turns."""
    from ..data.catalog import Card
    from ..llm.guide import sample_dialogue

    if not isinstance(pools, dict):
        pools = {"artworks": pools}
    mix = parse_mix(cfg.mix)
    names = list(mix)
    missing = [n for n in names if not pools.get(n)]
    if missing:
        raise ValueError(f"no crops for mix source(s) {missing}")
    rng = random.Random(cfg.seed * 1_000_003 + step)
    out = []
    for _ in range(cfg.batch):
        src = names[0] if len(names) == 1 else rng.choices(names, weights=[mix[n] for n in names])[0]
        pool = pools[src]
        c = pool[rng.randrange(len(pool))]
        card = Card.of(c.entry) if c.entry is not None and rng.random() < cfg.card_frac else None
        seen = rng.random() >= cfg.no_image_frac
        turns = sample_dialogue(rng, c.facts if seen else None, card, cfg.turns, cfg.vi_share)
        out.append(Draw(src, c, card, seen, turns))
    return out


def step_batch(cfg: SFTConfig, pool: dict[str, list[Crop]] | list[Crop], step: int, hf_tok, vocab, row_end: int | None):
    """The (input_ids, labels) pairs of training step ``step``: a pure function of (cfg.seed, step)."""
    from ..llm.sft import encode_guide_dialogue, image_ids

    pairs = []
    for d in draw_batch(cfg, pool, step):
        img = image_ids(vocab, d.crop.indices, row_end) if d.seen else []
        pairs.append(encode_guide_dialogue(img, d.card.text() if d.card else None, d.turns, hf_tok))
    return pairs


def _migrate_state(sdir: Path, trained: torch.nn.Module, opt: torch.optim.Optimizer, progress: dict) -> None:
    """Turn a resume state of the trainer before the harness (``optimizer.safetensors`` + ``optimizer.json``,
    or ``optimizer.pt``; the per-step losses in ``progress.json``) into the harness's ``state/`` folder and
    ``train_log.csv``; the adapter (already loaded into ``trained``) stays where it is."""
    from safetensors.torch import load_file

    if (sdir / "optimizer.safetensors").is_file():
        load_optimizer_tensors(opt, load_file(sdir / "optimizer.safetensors"),
                               json.loads((sdir / "optimizer.json").read_text()))
    elif (sdir / "optimizer.pt").is_file():                       # tensors only, read without pickle
        opt.load_state_dict(torch.load(sdir / "optimizer.pt", weights_only=True))
    wall = sum(g.get("train_s", 0) for g in progress["segments"] + [progress.get("current", {})])
    save_state(sdir, trained, opt, {"step": progress["step"], "wall_time_s": float(wall), "cpu_time_s": 0.0},
               trainable_only=True)
    log = RunLog(sdir)
    log.clear()
    for i, loss in enumerate(progress.pop("losses", [])[:progress["step"]]):
        log.write("train", {"step": i + 1, "loss": loss})
    for f in ("optimizer.safetensors", "optimizer.json", "optimizer.pt"):
        (sdir / f).unlink(missing_ok=True)
    (sdir / "progress.json").write_text(json.dumps(progress))


def state_dir(name: str) -> Path:
    from ..paths import cache_dir

    return cache_dir("train-state", name)


@register_trainer("sft", SFTConfig, "LoRA SFT of the embedded LLM into the museum guide that reads image tokens (§7)")
def train(cfg: SFTConfig, command: str = "museumtok train sft") -> Path:
    import museumtok
    from ..cards import write_model_card
    from ..llm.backends import TransformersBackend, make_backend
    from ..llm.sft import (AdapterConfig, add_adapter, answer_only_loss, code_words, collate, load_adapter,
                           newline_id, save_adapter, trainable_parameters, word_init_delta, word_init_positions)
    from ..llm.vocab import ImageVocab
    from ..paths import CHECKPOINT_DIR

    torch.set_num_threads(cfg.threads)
    tok = museumtok.load(cfg.tokenizer)
    if cfg.M not in tok.supported_M:
        raise ValueError(f"--M {cfg.M}: {cfg.tokenizer} gives M in {list(tok.supported_M)}")
    backend = make_backend(cfg.llm)
    if not isinstance(backend, TransformersBackend):
        raise ValueError(f"--llm {cfg.llm!r} is not a local transformers model; SFT needs its weights")
    model, hf_tok = backend.model, backend.tokenizer
    name = adapter_name(backend.name, cfg.tokenizer)
    out = Path(cfg.out) if cfg.out else CHECKPOINT_DIR / name
    sdir = state_dir(out.resolve().as_posix().strip("/").replace("/", "_"))
    row_end = newline_id(hf_tok) if cfg.row_ends else None
    vocab = ImageVocab.for_tokenizer(cfg.tokenizer, tok.K)
    progress = {"step": 0, "segments": []}
    torch.manual_seed(cfg.seed)         # here, after the loads (a first load in a process may draw random numbers)
    if cfg.resume:
        if not (sdir / "progress.json").is_file():
            raise FileNotFoundError(f"--resume: no saved state in {sdir}; start without --resume")
        progress = json.loads((sdir / "progress.json").read_text())
        pm, delta, vocab, acfg = load_adapter(sdir / "adapter", model, hf_tok)
        for n_, p in pm.named_parameters():
            p.requires_grad_("lora_" in n_)
    else:
        vocab.attach(model, hf_tok)
        acfg = AdapterConfig(r=cfg.r, alpha=cfg.alpha, tokenizer=cfg.tokenizer, K=tok.K, M=cfg.M, base=backend.name,
                             version=2, pos2d=cfg.pos2d, row_ends=cfg.row_ends)
        pm, delta = add_adapter(model, vocab, acfg, row_end_id=row_end)
        if cfg.init == "words":
            word_init_delta(pm, delta, hf_tok, code_words(tok, cfg.M))
            word_init_positions(pm, delta, hf_tok)
        elif cfg.init != "mean":
            raise ValueError(f"init must be 'mean' or 'words', got {cfg.init!r}")
    params = trainable_parameters(pm, delta)
    lora = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora, "lr": cfg.lr}, {"params": delta.parameters_to_train(), "lr": cfg.emb_lr}],
                            weight_decay=0.0)
    t_pool = time.time()
    pool = source_pools(cfg, tok)
    pool_s = time.time() - t_pool
    pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else hf_tok.eos_token_id
    bf16 = cfg.bf16 and (torch.cuda.is_available() or cpu_has_bf16())
    n_train = sum(p.numel() for p in params)
    trained = torch.nn.ModuleDict({"lm": pm, "image_rows": delta})   # what the harness moves, trains and saves
    if cfg.resume and not (sdir / STATE_DIR / "state.json").is_file():
        _migrate_state(sdir, trained, opt, progress)                 # a state written before the harness
    if "current" in progress:                                        # a segment killed before it could end
        progress["segments"].append(progress.pop("current"))
    before_s = json.loads((sdir / STATE_DIR / "state.json").read_text())["wall_time_s"] if cfg.resume else 0.0
    seg = {"start_step": progress["step"], "command": command, "started": time.strftime("%Y-%m-%d %H:%M"),
           "bf16": bf16, "threads": cfg.threads}
    log = open(cfg.log, "a") if cfg.log else None

    def on_save(step: int) -> None:     # beside the harness's state: the adapter as peft saves it, the segments
        progress["step"] = step
        progress["current"] = dict(seg, end_step=step, train_s=round(time.time() - t_train))
        acfg.extra = {"steps": step, "trainable_parameters": n_train}
        save_adapter(sdir / "adapter", pm, delta, acfg)
        (sdir / "progress.json").write_text(json.dumps(progress))

    def on_log(row: dict) -> None:
        step = row["step"]
        if log:
            log.write(json.dumps({"step": step, "loss": round(row["loss"], 4), "t": row["wall_s"] - before_s}) + "\n")
            log.flush()
        if step % 10 == 0:
            recent = [r["loss"] for r in h.history[-10:]]
            print(f"step {step}/{cfg.steps}  loss {sum(recent) / len(recent):.3f}  "
                  f"{(row['wall_s'] - before_s) / max(1, step - seg['start_step']):.1f} s/step", flush=True)

    def step_fn(model, batch, step):
        loss = answer_only_loss(model["lm"], batch)
        return loss, {"loss": loss}

    h = Harness(trained, opt, steps=cfg.steps, warmup=cfg.warmup, min_lr_ratio=0.1, clip=1.0,
                max_wall_minutes=before_s / 60 + cfg.max_minutes, time_label="--max-minutes (this segment)",
                run_dir=sdir, resume=cfg.resume, save_every=cfg.save_every, log_every=1, on_log=on_log,
                precision="bf16" if bf16 else "fp32", trainable_only=True, on_save=on_save, stop_on_signal=True,
                stop_after=cfg.stop_after, desc=name)
    t_train = time.time()
    try:                                # the data of step t (0-based) is that of the earlier trainer's step t + 1
        res = h.fit(step_fn, lambda t: collate(step_batch(cfg, pool, t + 1, hf_tok, vocab, row_end), pad))
    finally:
        if log:
            log.close()
    step, train_s = res["steps"], res["wall_time_s"] - before_s
    progress.pop("current", None)       # the harness saved the state and (on_save) the adapter as it stopped
    progress["segments"].append(dict(seg, end_step=step, train_s=round(train_s), pool_s=round(pool_s),
                                     stopped_by=res["stopped_by"]))
    (sdir / "progress.json").write_text(json.dumps(progress))

    # the adapter and its card (the evaluation table is added by `museumtok eval chat --write-card`)
    acfg.extra = {"steps": step, "dialogues_seen": step * cfg.batch, "trainable_parameters": n_train,
                  "segments": progress["segments"], "mix": parse_mix(cfg.mix)}
    save_adapter(out, pm, delta, acfg)
    losses = [round(float(r["loss"]), 4) for r in RunLog(sdir).rows("train")]
    (out / "losses.json").write_text(json.dumps(losses))
    every = max(1, len(losses) // 12)
    curve = ", ".join(f"{sum(losses[i:i + every]) / len(losses[i:i + every]):.3f}" for i in range(0, len(losses), every))
    chain = "; ".join(f"steps {g['start_step']}→{g['end_step']} in {g['train_s'] / 60:.0f} min ({g['started']}, "
                      f"{'bf16' if g['bf16'] else 'fp32'}, {g['threads']} threads)" for g in progress["segments"])
    wall = sum(g["train_s"] for g in progress["segments"])
    write_model_card(
        out, name,
        summary=(f"The museum guide: a LoRA adapter (r={acfg.r}, alpha={acfg.alpha}, q/k/v/o) plus trainable rows for the "
                 f"{tok.K + 2} image tokens of `{cfg.tokenizer}`"
                 + (f" and a 2-D position embedding ({acfg.pos2d} bins per axis)" if acfg.pos2d else "")
                 + f" on SmolLM2-135M-Instruct, trained at M={acfg.M}"
                 + (" with a row-end token after each grid row" if acfg.row_ends else "")
                 + f" (format version {acfg.version}). It answers in sentences: what the picture shows from the "
                 "tokens, who/what/when from the catalog card in the prompt, \"I can't tell\" for what neither says. "
                 f"{n_train:,} trainable parameters; tokenizer and base weights frozen. Loaded by the chat for "
                 f"`{cfg.tokenizer}` tokens."),
        data=((f"{cfg.pool_crops} random crops (scale, crop, flip) of the 80 TRAIN-split artworks, tokenized once"
               if list(parse_mix(cfg.mix)) == ["artworks"] else
               f"random crops (scale, crop, flip), tokenized once, from the §7.1 data mix `{cfg.mix}` (each dialogue's "
               f"source drawn with these shares): {mix_description(cfg.mix)}")
              + f"; per step {cfg.batch} dialogues of {cfg.turns} Visitor/Guide turns drawn from them (card in the prompt for "
              f"{cfg.card_frac:.0%}, no image for {cfg.no_image_frac:.0%}, Vietnamese questions {cfg.vi_share:.0%}); "
              "answers built by `museumtok.llm.guide` from the crop's pixels and the card; the evaluation's "
              "phrasings and the TEST/Kodak images are never trained on"),
        steps=f"{step} AdamW steps × {cfg.batch} dialogues; chain: {chain}; mean loss per ~{every} steps: {curve}",
        wall_time_s=wall, metrics=[], command=command,
        extra="\n<!-- eval-chat:start -->\nNot evaluated yet: `museumtok eval chat --adapter " + str(out) + " --write-card`.\n<!-- eval-chat:end -->\n",
        facts={"segments": progress["segments"], "config": asdict(cfg)},
    )
    print(f"{out}: {step} steps; state in {sdir} (resume with --resume)")
    return out


def evaluate_adapter(directory: Path, eval_crops: int = 30, seed: int = 1) -> list[dict]:
    """Re-run the pixel-question ablation of a saved adapter on ``eval_crops`` held-out TEST crops."""
    import museumtok
    from ..llm.backends import TransformersBackend
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
    from ..llm.backends import TransformersBackend
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
