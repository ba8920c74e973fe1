"""``museumtok eval chat``: a fixed, versioned evaluation of the museum guide (review §7.4, §9, §11).

The guide is asked held-out questions (phrasings it was never trained on, English and Vietnamese)
about images it never saw, through the same path as the app's Chat tab (catalog retrieval → card,
:class:`~museumtok.llm.chat.ChatSession` prompts, the guard), and every free-text answer is scored
automatically by reading its facts back out (:func:`museumtok.llm.guide.score`):

    images: 15 TEST-split artworks (whole + one crop) · 24 Kodak photos · 10 scikit-image photos (not in the catalog)
      │  retrieval (token histograms) ─► the catalog card in the prompt, or "not in the catalog"
      ▼
    questions  visual (colour, bright/dark, warm/cool, where the light falls, top/bottom colours) × {real, shuffled, none}
               card (title, artist, date, medium) · refusals · descriptions
      │  ChatSession.prepare ─► backend.generate_many (greedy, batched) ─► guard check
      ▼
    scores ± standard error · hallucination rate (names/titles/dates not on the card) · JSON + Markdown

``self_consistency=N`` (``--self-consistency N --temperature T``): every prompt is sampled N times at T
(batched) and the answer carrying the majority reading is scored (:mod:`museumtok.llm.consistency`, review
§7.2 item 3); the configuration records N and T, and the file name ends in ``-scN-tT``. N = 1 at T = 0 is
the greedy evaluation above, unchanged.

Version history: ``chat-eval-1`` (this file's first version). Changing the images, questions or
scoring rules must bump :data:`EVAL_VERSION`, so that numbers of different versions are never compared.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..llm import guide as G

EVAL_VERSION = "chat-eval-1"
#: scikit-image's bundled photos (no download): the "others" that are in no catalog
OTHER_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "colorwheel", "hubble_deep_field",
                "immunohistochemistry", "retina", "logo")
CONDITIONS = ("real", "shuffled", "none")
CROP_FRACTION = 0.6          # the crop view: 60% of each side, at a seeded position
MAX_NEW = {"describe": 80}   # new tokens per answer (48 for the other kinds)
CLEAR_LIGHT = 0.05           # "where the light falls" is also scored on the images whose brightest half beats its
                             # opposite by at least this much mean luma (elsewhere the light is nearly even)


@dataclass
class EvalImage:
    id: str                       # "<source>/<name>/<view>"
    source: str                   # "artworks-test", "kodak" or "others"
    image: Image.Image            # the view the visitor uploads
    entry: object | None = None   # its catalog entry when the work is in the catalog (artworks only)


@dataclass
class Item:
    image: int                    # index into the image list
    kind: str                     # a guide kind
    question: str
    lang: str                     # "en" or "vi"


def _seed(text: str) -> int:
    return int.from_bytes(text.encode("utf-8")[:8].ljust(8, b"\0"), "little") ^ 0x5EED


def eval_images(limit: int | None = None) -> list[EvalImage]:
    """The fixed image set (see the module docstring); ``limit``: the first N of each source (quick runs)."""
    from ..data.catalog import load_catalog
    from ..data.images import load_image

    out: list[EvalImage] = []
    for e in load_catalog(split="test", collection="artworks")[:limit]:
        img = load_image(e.find()).image
        out.append(EvalImage(f"artworks-test/{e.id}/whole", "artworks-test", img, e))
        rng = random.Random(_seed(e.id))
        w, h = img.size
        cw, ch = int(w * CROP_FRACTION), int(h * CROP_FRACTION)
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out.append(EvalImage(f"artworks-test/{e.id}/crop", "artworks-test", img.crop((x0, y0, x0 + cw, y0 + ch)), e))
    for e in load_catalog(collection="kodak")[:limit]:
        out.append(EvalImage(f"kodak/{e.id}/whole", "kodak", load_image(e.find()).image))
    import numpy as np
    import skimage.data as skd

    for name in OTHER_IMAGES[:limit]:
        a = np.asarray(getattr(skd, name)())
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        out.append(EvalImage(f"others/{name}/whole", "others", Image.fromarray(a[..., :3].astype("uint8")).convert("RGB")))
    return out


def build_items(images: Sequence[EvalImage]) -> list[Item]:
    """The questions: every visual kind, the card kinds (title/artist only for works not in the catalog),
    one refusal and one description per image, phrased from the held-out sets (every fourth in Vietnamese)."""
    items: list[Item] = []
    n = 0
    for i, im in enumerate(images):
        kinds = list(G.VISUAL_KINDS) + (list(G.CARD_KINDS) if im.entry is not None else ["title", "artist"])
        kinds += ["refuse", "describe"]
        for kind in kinds:
            lang = "vi" if n % 4 == 3 else "en"
            pool = G.PHRASINGS[kind]["vi_heldout" if lang == "vi" else "heldout"]
            items.append(Item(i, kind, pool[(n // 4 + i) % len(pool)], lang))
            n += 1
    return items


def _shuffled(tokens, seed: int):
    """The same tokens in a random order (same grid shape): what is left when position means nothing."""
    import copy

    g = torch.Generator().manual_seed(seed)
    t = copy.copy(tokens)
    flat = tokens.indices.reshape(-1)
    t.indices = flat[torch.randperm(flat.numel(), generator=g)].reshape(tokens.indices.shape)
    return t


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


@dataclass
class Answer:
    item: int
    condition: str
    answer: str                    # what the visitor reads (the guard's lead and check applied)
    raw: str                       # what the model generated
    scores: dict = field(default_factory=dict)
    ungrounded: list = field(default_factory=list)       # in the final answer
    ungrounded_raw: list = field(default_factory=list)   # in the model's raw answer
    vote: dict | None = None                             # self-consistency: samples, readings, the chosen one


def run_chat_eval(tokenizer: str = "lloyd-patch-k1024", M: int = 64, backend=None, adapter: str | Path | None = "auto",
                  guard: bool = True, check: bool = True, conditions: Sequence[str] = CONDITIONS,
                  limit: int | None = None, batch_size: int = 16, progress: bool = True, preload: bool = True,
                  self_consistency: int = 1, temperature: float = 0.0, seed: int = 0) -> dict:
    """Run the evaluation for one (tokenizer, M, backend, adapter, guard) configuration; returns a dict
    with the configuration, every answer and the summary (:func:`summarise`).

    ``preload``: for a tokenizer without an adapter (``adapter=None``), load the bundled guide adapters
    first, as the app does at start-up, so that guarded turns are answered by a guide that cannot see
    (rather than by the bare base model).

    ``self_consistency`` N > 1: N answers per prompt sampled at ``temperature`` (default 0.7 when 0 is given),
    the majority reading's answer scored; N = 1 with ``temperature`` > 0 scores one sampled answer."""
    from .. import registry
    from ..app.chat import RECOGNITION_THRESHOLD, CATALOG_INDEX
    from ..llm.backends import make_backend
    from ..llm.chat import ChatSession
    from ..llm.guard import GroundedRelease

    from ..llm.consistency import vote

    if self_consistency < 1:
        raise ValueError(f"self_consistency must be ≥ 1, got {self_consistency}")
    if self_consistency > 1 and temperature <= 0:
        temperature = 0.7
    N = self_consistency
    t0 = time.time()
    backend = backend or make_backend()
    tok = registry.load(tokenizer)
    M = tok.check_M(M)
    images = eval_images(limit)
    items = build_items(images)
    if preload and adapter is None and hasattr(backend, "load_guide"):
        from ..app.chat import preload_guide

        preload_guide(backend)
    index, err = CATALOG_INDEX.get()
    by_image: dict[int, list[int]] = {}
    for j, it in enumerate(items):
        by_image.setdefault(it.image, []).append(j)

    session = ChatSession(backend, guard=guard, check=check, adapter=adapter, reserve_answer=96)
    jobs = []           # (item index, condition, prompt, lead, card)
    meta = []           # per image: facts, card, recognised id
    for i, im in enumerate(images):
        match = index.query(im.image, threshold=RECOGNITION_THRESHOLD) if index is not None else None
        card = match.card if match is not None else None
        t = tok.encode(im.image, M)
        facts = G.visual_facts(t.working.x)
        meta.append({"id": im.id, "source": im.source, "in_catalog": im.entry is not None,
                     "recognised": match.entry.id if match is not None and match.entry is not None else None,
                     "score": round(match.score, 3) if match is not None else None, "card": card, "facts": facts})
        for cond in conditions:
            tokens = t if cond != "shuffled" else _shuffled(t, _seed(im.id))
            session.set_image(tok, None, M, image_id=im.id, card=card, tokens=tokens, warm=False)
            if cond == "none":
                session.tokens = None           # the ablation: the same prompt without the image block
            for j in by_image[i]:
                it = items[j]
                if cond != "real" and it.kind not in G.VISUAL_KINDS:
                    continue
                session.history, session._told_cant_read = [], False
                rec = session.prepare(it.question)
                if rec.error:
                    raise RuntimeError(f"{im.id}: {rec.error}")
                lead = session.lead(rec)
                prompt = backend.encode_messages(rec.messages) if hasattr(backend, "generate_many") else rec.messages
                jobs.append((j, cond, prompt, lead, card))
        if progress and (i + 1) % 10 == 0:
            print(f"  prompts for {i + 1}/{len(images)} images", flush=True)

    raws: list[list[str]] = [[] for _ in jobs]           # N samples per job (1 when greedy)
    sampling = {"temperature": temperature, "seed": seed} if temperature > 0 else {}
    for max_new in sorted({MAX_NEW.get(items[j].kind, 48) for j, *_ in jobs}):
        sel = [k for k, (j, *_rest) in enumerate(jobs) if MAX_NEW.get(items[j].kind, 48) == max_new]
        rep = [k for k in sel for _ in range(N)]          # each prompt N times, adjacent (same batch)
        if hasattr(backend, "generate_many"):
            outs = backend.generate_many([jobs[k][2] for k in rep], max_new_tokens=max_new, batch_size=batch_size,
                                         **sampling)
        else:
            outs = [backend.generate(jobs[k][2], max_new_tokens=max_new, temperature=temperature) for k in rep]
        for k, o in zip(rep, outs):
            raws[k].append(o)
        if progress:
            print(f"  generated {len(rep)} answers of up to {max_new} tokens ({time.time() - t0:.0f} s)", flush=True)

    answers: list[Answer] = []
    for (j, cond, _, lead, card), samples in zip(jobs, raws):
        it = items[j]
        v = None
        if N > 1:                # the vote reads what each sample says, as the chat does (llm.consistency)
            v = vote(samples, it.kind, G.Card.parse(card),
                     acceptable=(lambda t, c=card: not G.ungrounded_mentions(t, c)) if check else None)
        raw = v.answer if v is not None else samples[0]
        if check:
            g = GroundedRelease(card)
            g.feed(raw)
            final = lead + g.final(it.question)
        else:
            final = lead + raw.strip()
        sc = G.score(it.kind, final, meta[it.image]["facts"], G.Card.parse(card))   # the truth, whatever the condition
        answers.append(Answer(j, cond, final, raw, sc, G.ungrounded_mentions(final, card),
                              G.ungrounded_mentions(raw, card), v.record() if v is not None else None))
    res = {
        "version": EVAL_VERSION,
        "config": {"tokenizer": tokenizer, "M": M, "backend": backend.name, "adapter": _adapter_label(backend, session),
                   "guard": guard, "check": check, "conditions": list(conditions), "limit": limit,
                   "text_guide": bool(getattr(backend, "text_guide", False)),
                   "self_consistency": N, "temperature": temperature},
        "images": meta,
        "items": [asdict(x) for x in items],
        "answers": [asdict(a) for a in answers],
        "wall_s": round(time.time() - t0, 1),
    }
    res["summary"] = summarise(res)
    return res


def _adapter_label(backend, session) -> str:
    if getattr(backend, "adapter_active", False):
        from ..paths import REPO_ROOT

        path = Path(getattr(backend, "_adapters", {}).get(backend._active, ("?",))[0])
        try:
            return str(path.resolve().relative_to(REPO_ROOT.resolve()))
        except ValueError:
            return str(path)
    if getattr(backend, "text_guide", False):
        return "none (a guide adapter answers without the image)"
    return "none"


def summarise(res: dict) -> dict:
    """Means ± standard errors per metric and condition, hallucination rates, recognition."""
    items, images = res["items"], res["images"]
    acc: dict[tuple[str, str], list[float]] = {}
    by_lang: dict[tuple[str, str], list[float]] = {}
    for a in res["answers"]:
        it = items[a["item"]]
        for k, v in a["scores"].items():
            if k == "describe_sentences":
                continue
            acc.setdefault((k, a["condition"]), []).append(v)
            if a["condition"] == "real" and it["kind"] in G.VISUAL_KINDS:
                by_lang.setdefault(("visual", it["lang"]), []).append(v)
            elif a["condition"] == "real" and k in ("title", "artist", "date", "medium"):
                by_lang.setdefault(("catalog", it["lang"]), []).append(v)
    table = {}
    for (k, cond), vs in sorted(acc.items()):
        p = sum(vs) / len(vs)
        table.setdefault(k, {})[cond] = {"mean": round(p, 4), "se": round(_se(p, len(vs)), 4), "n": len(vs)}
    real = [a for a in res["answers"] if a["condition"] == "real"]
    out_cat = [a for a in real if not images[items[a["item"]]["image"]]["in_catalog"]]

    def rate(rows, key):
        n = len(rows)
        p = sum(bool(a[key]) for a in rows) / n if n else float("nan")
        return {"mean": round(p, 4), "se": round(_se(p, n), 4), "n": n}

    clear = [a for a in real if items[a["item"]]["kind"] == "light"
             and images[items[a["item"]]["image"]]["facts"].get("light_margin", 0) >= CLEAR_LIGHT]
    clear_by_cond = {}
    for a in res["answers"]:
        it = items[a["item"]]
        if it["kind"] == "light" and images[it["image"]]["facts"].get("light_margin", 0) >= CLEAR_LIGHT:
            clear_by_cond.setdefault(a["condition"], []).append(a["scores"]["light"])
    if clear:
        table["light_clear"] = {c: {"mean": round(sum(v) / len(v), 4), "se": round(_se(sum(v) / len(v), len(v)), 4),
                                    "n": len(v)} for c, v in clear_by_cond.items()}
    known = [m for m in images if m["in_catalog"]]
    unknown = [m for m in images if not m["in_catalog"]]
    return {
        "scores": table,
        "hallucination": {"all": rate(real, "ungrounded"), "not_in_catalog": rate(out_cat, "ungrounded"),
                          "all_raw": rate(real, "ungrounded_raw"), "not_in_catalog_raw": rate(out_cat, "ungrounded_raw")},
        "visual_by_language": {lang: {"mean": round(sum(v) / len(v), 4), "n": len(v)}
                               for (group, lang), v in sorted(by_lang.items()) if group == "visual"},
        "catalog_by_language": {lang: {"mean": round(sum(v) / len(v), 4), "n": len(v)}
                                for (group, lang), v in sorted(by_lang.items()) if group == "catalog"},
        "recognition": {
            "catalog_views_recognised": round(sum(m["recognised"] == m["id"].split("/")[1] for m in known) / max(1, len(known)), 4),
            "catalog_views": len(known),
            "unknown_given_a_card": sum(m["recognised"] is not None for m in unknown),
            "unknown_images": len(unknown),
        },
    }


ROWS = (("colour_top1", "colour (top-1)"), ("colour_top2", "colour (top-2 as a set)"), ("brightness", "bright/dark"),
        ("warmth", "warm/cool"), ("light", "where the light falls"), ("light_clear", f"… where one side is clearly brighter (≥ {CLEAR_LIGHT} luma)"), ("layout", "top/bottom colours"),
        ("title", "title (recognised works)"), ("artist", "artist (recognised works)"), ("date", "date (recognised works)"),
        ("medium", "medium (recognised works)"), ("unknown_refused", "unknown work: says it can't tell"),
        ("refusal", "refusal (\"I can't tell\")"), ("describe_form", "description: 2–3 sentences, card + colour"))


def markdown(res: dict) -> str:
    """The summary as a Markdown table (mean ± standard error; n answers) plus hallucination and recognition lines."""
    s, c = res["summary"], res["config"]
    conds = c["conditions"]
    lines = [f"`{EVAL_VERSION}` · tokenizer `{c['tokenizer']}` · M = {c['M']} · backend `{c['backend']}` · "
             f"adapter: {c['adapter']} · guard {'on' if c['guard'] else 'off'} · check {'on' if c['check'] else 'off'} · "
             + (f"{_decoding(c)} · " if _decoding(c) else "") + f"{res['wall_s'] / 60:.1f} min", "",
             "| question | " + " | ".join(conds) + " | n |", "|---|" + "---|" * (len(conds) + 1)]
    for key, label in ROWS:
        row = s["scores"].get(key)
        if not row:
            continue
        cells = [f"{row[k]['mean']:.2f} ± {row[k]['se']:.2f}" if k in row else "" for k in conds]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {row.get('real', next(iter(row.values())))['n']} |")
    h = s["hallucination"]
    r = s["recognition"]
    lines += ["", f"Hallucination rate (an artist, title or date not on the card; any name for works not in the catalog), "
                  f"real tokens: **{h['all']['mean']:.1%}** of {h['all']['n']} answers overall, "
                  f"**{h['not_in_catalog']['mean']:.1%}** of {h['not_in_catalog']['n']} on images not in the catalog "
                  f"(before the guard's check: {h['all_raw']['mean']:.1%} / {h['not_in_catalog_raw']['mean']:.1%}).",
              f"Visual questions by language (real tokens): " + ", ".join(
                  f"{k}: {v['mean']:.2f} (n = {v['n']})" for k, v in s["visual_by_language"].items()) + "; catalog questions "
                  "(title, artist, date, medium) by language: " + ", ".join(
                  f"{k}: {v['mean']:.2f} (n = {v['n']})" for k, v in s.get("catalog_by_language", {}).items()) + ".",
              f"Retrieval put the right card in the prompt for {r['catalog_views_recognised']:.0%} of the "
              f"{r['catalog_views']} catalog views; {r['unknown_given_a_card']} of {r['unknown_images']} images not in "
              f"the catalog were given a card."]
    return "\n".join(lines) + "\n"


def compare_runs(a: dict, b: dict, condition: str = "real") -> list[dict]:
    """Paired comparison of two runs on the same items (e.g. greedy against self-consistency): per question,
    each run's mean, the difference b − a with its paired standard error (the scores of one item are paired),
    and how many answers scored higher / lower in b. Raises when the runs asked different questions."""
    if a["items"] != b["items"]:
        raise ValueError("the two runs asked different questions (other images, --limit or evaluation version)")
    pairs: dict[str, list[tuple[float, float]]] = {}
    ans_b = {(x["item"], x["condition"]): x for x in b["answers"]}
    for x in a["answers"]:
        y = ans_b.get((x["item"], x["condition"]))
        if x["condition"] != condition or y is None:
            continue
        for key, v in x["scores"].items():
            if key in y["scores"] and v is not None and y["scores"][key] is not None:
                pairs.setdefault(key, []).append((float(v), float(y["scores"][key])))
    rows = []
    for key, label in ROWS:
        p = pairs.get(key)
        if not p:
            continue
        n = len(p)
        d = [yb - xa for xa, yb in p]
        mean_d = sum(d) / n
        sd = (sum((v - mean_d) ** 2 for v in d) / (n - 1)) ** 0.5 if n > 1 else 0.0
        rows.append({"question": label, "n": n, "a": sum(x for x, _ in p) / n, "b": sum(y for _, y in p) / n,
                     "diff": mean_d, "se_diff": sd / n ** 0.5, "higher": sum(v > 0 for v in d),
                     "lower": sum(v < 0 for v in d)})
    return rows


def _decoding(c: dict) -> str:
    n, t = c.get("self_consistency", 1), c.get("temperature", 0.0)
    if n > 1:
        return f"self-consistency: majority of {n} samples at T = {t:g}"
    return "" if not t else f"one sample at T = {t:g}"      # greedy: the header says nothing, as before


def label(res: dict) -> str:
    """File name of a run: tokenizer, M, the adapter folder (or guarded/unguarded base model), the decoding
    when it is not greedy (``-sc5-t0.7``), and the image limit."""
    c = res["config"]
    if not c["adapter"].startswith("none"):
        who = Path(c["adapter"]).name
    else:
        who = ("guarded" + ("-textguide" if c.get("text_guide") else "")) if c["guard"] else "unguarded"
    n, t = c.get("self_consistency", 1), c.get("temperature", 0.0)
    dec = (f"-sc{n}" if n > 1 else "") + (f"-t{t:g}" if t else "")
    return f"{c['tokenizer']}-M{c['M']}-{who}{dec}" + ("" if c["limit"] is None else f"-limit{c['limit']}")


def write_chat_eval(res: dict, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = label(res)                                   # may hold a dot ("-t0.7"): append, never with_suffix
    p1, p2 = out / f"{base}.json", out / f"{base}.md"
    p1.write_text(json.dumps(res, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    p2.write_text(f"# Chat evaluation: {label(res)}\n\n" + markdown(res), encoding="utf-8")
    return [p1, p2]


def write_into_card(card: Path, sections: Sequence[str]) -> None:
    """Replace the text between ``<!-- eval-chat:start -->`` and ``<!-- eval-chat:end -->`` in a model card."""
    text = card.read_text(encoding="utf-8")
    a, b = "<!-- eval-chat:start -->", "<!-- eval-chat:end -->"
    body = f"{a}\n## The guide, measured (`museumtok eval chat`)\n\n" + "\n".join(sections) + f"\n{b}"
    if a in text and b in text:
        text = text[:text.index(a)] + body + text[text.index(b) + len(b):]
    else:
        text += "\n" + body + "\n"
    card.write_text(text, encoding="utf-8")
