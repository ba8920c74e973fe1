"""Self-consistency decoding for the guide (review §7.2 item 3, §7.4): sample N answers, vote, answer once.

Wang, Wei, Schuurmans, Le, Chi, Narang, Chowdhery & Zhou, "Self-Consistency Improves Chain of Thought
Reasoning in Language Models", ICLR 2023, arXiv:2203.11171: instead of the one greedy answer, sample N
answers at temperature T and return the answer most of them agree on. The paper marginalises over
reasoning paths and votes on the final answer parsed out of each; the guide gives no chain of thought,
so here the vote is over what each free-text answer *says*, read back with the evaluation's own readers
(:mod:`museumtok.llm.guide`), never over the raw strings (two phrasings of "mostly blue, then brown" agree):

    question ─► kind (answer_kind) ─► N samples at T ─► reading(kind, answer) ─► majority reading
                                                                               ─► one answer carrying it

    colour      the first two colours named, in order (read_colours)
    brightness  bright / dark (read_choice)        warmth  warm / cool
    light       the side named (read_side)         layout  (top colour, bottom colour) (read_layout)
    title, artist, date, medium   the card's value when the answer names it, else "can't tell" when it
                                  refuses, else the answer's normalised text
    refuse      whether it says it can't tell      describe  (first colour, bright/dark, warm/cool, side)
    unknown kind  the answer's normalised text (exact-match voting, as the paper does for free answers)

Answers whose reading is empty (no colour named, …) do not vote unless none has a reading; ties go to the
reading seen first. The review also names distilling the voted answers back into the model; that step is
not done here. With N = 1 the chat and the evaluation decode greedily exactly as before.
"""
from __future__ import annotations

import inspect
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

from ..data.catalog import Card
from .guide import (CARD_KINDS, KINDS, PHRASINGS, _norm, mentions, read_choice, read_colours, read_layout,
                    read_side, says_cant_tell)

#: English rules for a question's kind when it is none of the guide's phrasings; checked in this order
#: (questions to refuse first, then the picture's questions from the most specific, then the card's fields;
#: the guard's card rules, :func:`~museumtok.llm.guard.question_kind`, come after these)
EN_RULES: tuple[tuple[str, str], ...] = (
    ("refuse", r"\bprice\b|\bcost\b|\bworth\b|\bdollars?\b|\bmoney\b|\bsell\b|\bbuy\b|\beat\b|\bate\b|breakfast|"
               r"lunch|dinner|\bfood\b|weather|\brain\b|\bmood\b|thinking|\bhappy\b|\bsad\b|insurance|\bdog\b|"
               r"phone|\btall\b|favou?rite|music|how long did|how many people|owned"),
    ("light", r"brightest|lightest|brighter|where\b.*\b(?:light|lit|bright)|which (?:side|half|part|area)\b.*"
              r"(?:\blit\b|light|bright)|light (?:falls?|comes?|on the)|catches the most light|strongest light"),
    ("layout", r"\b(?:top|upper|above)\b.*\b(?:bottom|lower|below)\b|\b(?:bottom|lower|below)\b.*\b(?:top|upper|above)\b"),
    ("warmth", r"\bwarm\b|\bcool\b|\bcold\b|temperature"),
    ("brightness", r"\bbright\b|\bdark\b|\bdim\b|gloomy|\blight or\b|how light|well lit|how much light"),
    ("colour", r"colou?rs?\b|\bhues?\b"),
    ("date", r"\bwhen\b|\byear\b|\bdate\b|how old|\bperiod\b|century"),
    ("medium", r"painted on|made (?:of|with)|\bmedium\b|\bmaterials?\b|\btechnique\b|\boil\b|\bprint\b|\bink\b"),
    ("title", r"\bname\b|\btitle\b|\bcalled\b|which (?:art)?work|which (?:painting|piece|picture) is|what is this (?:art)?work"),
    ("artist", r"\bwho\b|\bwhom\b|\bartist\b|\bpainter\b|\bwhose\b"),
    ("describe", r"describe|description|tell me about|what is this\b|what do you see|introduce|what should i know|"
                 r"what'?s in this|explain"),
)
_EN_COMPILED = tuple((k, re.compile(p, re.I)) for k, p in EN_RULES)


def _phrasing_index() -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, sets in PHRASINGS.items():
        for qs in sets.values():
            for q in qs:
                out.setdefault(_norm(q), kind)
    return out


_PHRASING_KIND = _phrasing_index()


def answer_kind(question: str) -> str | None:
    """The guide's question type (a key of :data:`~museumtok.llm.guide.KINDS`) of a visitor's question:
    one of the guide's own phrasings, a Vietnamese question the desk's rules place
    (:func:`~museumtok.llm.intent.vietnamese_kind`), an English one the rules above or the guard's card
    rules (:func:`~museumtok.llm.guard.question_kind`) place; None otherwise."""
    from .guard import question_kind
    from .intent import is_vietnamese, vietnamese_kind

    q = (question or "").strip()
    if not q:
        return None
    hit = _PHRASING_KIND.get(_norm(q))
    if hit is not None:
        return hit
    if is_vietnamese(q):
        return vietnamese_kind(q)
    for kind, pat in _EN_COMPILED:
        if pat.search(q):
            return kind
    return question_kind(q)


def reading(kind: str | None, text: str, card: Card | None = None) -> Hashable | None:
    """What an answer says, normalised for voting (see the module docstring); None when it says nothing
    the reader for ``kind`` recognises. ``card``: the catalog card in the prompt (for the card kinds)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "colour":
        return tuple(read_colours(text)[:2]) or None
    if kind == "brightness":
        return read_choice(text, ("bright", "dark"))
    if kind == "warmth":
        return read_choice(text, ("warm", "cool"))
    if kind == "light":
        return read_side(text)
    if kind == "layout":
        r = read_layout(text)
        return r if any(r) else None
    if kind == "refuse":
        return says_cant_tell(text)
    if kind == "describe":
        cols = read_colours(text)
        r = (cols[0] if cols else None, read_choice(text, ("bright", "dark")), read_choice(text, ("warm", "cool")),
             read_side(text))
        return r if any(r) else None
    if kind in CARD_KINDS:
        if card is not None and mentions(text, getattr(card, kind)):
            return ("card", getattr(card, kind))
        if says_cant_tell(text):
            return "can't tell"
    t = _norm(text)
    return t or None


@dataclass
class Vote:
    answer: str                    # the chosen sample
    index: int                     # its position among the samples
    reading: Hashable | None       # the winning reading (None: no sample had one)
    counts: dict                   # reading -> number of samples carrying it (readable keys)
    kind: str | None               # the question kind the readings used
    samples: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """JSON-ready summary for the audit log and the evaluation's answers."""
        return {"kind": self.kind, "reading": _show(self.reading), "chosen": self.index, "counts": self.counts,
                "samples": list(self.samples)}


def _show(r) -> str | None:
    if r is None:
        return None
    if isinstance(r, tuple):
        return " / ".join("·" if x is None else str(x) for x in r)
    return str(r)


def vote(samples: Sequence[str], kind: str | None, card: Card | None = None,
         acceptable: Callable[[str], bool] | None = None) -> Vote:
    """The majority reading of ``samples`` and the first sample that carries it (preferring one that
    ``acceptable`` accepts, e.g. one the guard would not cut). Ties: the reading met first wins."""
    if not samples:
        raise ValueError("vote needs at least one sample")
    reads = [reading(kind, s, card) for s in samples]
    counts = Counter(r for r in reads if r is not None)
    if not counts:
        return Vote(samples[0], 0, None, {}, kind, list(samples))
    first = {}
    for i, r in enumerate(reads):
        if r is not None:
            first.setdefault(r, i)
    win = max(counts, key=lambda r: (counts[r], -first[r]))
    carriers = [i for i, r in enumerate(reads) if r == win]
    pick = next((i for i in carriers if acceptable is None or acceptable(samples[i])), carriers[0])
    shown = {_show(r): c for r, c in sorted(counts.items(), key=lambda rc: (-rc[1], first[rc[0]]))}
    return Vote(samples[pick], pick, win, shown, kind, list(samples))


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def sample_answers(backend, messages: list[dict], n: int, temperature: float, max_new_tokens: int,
                   seed: int = 0) -> list[str]:
    """``n`` answers to one prompt at ``temperature``: batched through ``generate_many`` when the backend
    samples there (the embedded model), else ``n`` calls of ``generate`` (seeds ``seed``…``seed+n−1`` where
    the backend takes a seed; an HTTP server samples with its own randomness)."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    many = getattr(backend, "generate_many", None)
    if many is not None and _accepts(many, "temperature") and hasattr(backend, "encode_messages"):
        ids = backend.encode_messages(messages)
        return many([ids] * n, max_new_tokens=max_new_tokens, batch_size=n, temperature=temperature, seed=seed)
    seeded = _accepts(backend.stream, "seed")
    return ["".join(backend.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature,
                                   **({"seed": seed + i} if seeded else {}))) for i in range(n)]


__all__ = ["answer_kind", "reading", "vote", "Vote", "sample_answers", "EN_RULES"]
