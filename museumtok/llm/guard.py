"""The guard: the guide never describes tokens it was not taught to read, and never names what the card
does not say (review §7.4's "no invented facts", §11's card by retrieval).

Two rules, applied by :class:`~museumtok.llm.chat.ChatSession` to every turn:

1. **No pretending to see.** When no fine-tuned adapter reads the current tokenizer's tokens (any
   tokenizer but the adapters', any HTTP model), the image tokens are left out of the prompt, the model
   is told it cannot see the picture and must answer from the catalog card, and the answer says so in
   the chat (:func:`cant_read_notice`).
2. **Grounded names.** The answer is released word by word only while it names no artist, title or
   date that the card does not hold (:func:`~museumtok.llm.guide.ungrounded_mentions`); at the first
   ungrounded name the generation is cut and the answer replaced by one built from the card
   (:func:`fallback_answer`). The cut is recorded in the turn and the audit log.

    question ─► prompt (image tokens only if an adapter reads them) ─► model ─► words ─► check ─► visitor
                                                                                  └─ ungrounded: card answer
"""
from __future__ import annotations

import re

from ..data.catalog import Card
from .guide import CANT_TELL, UNKNOWN_WORK, answer, ungrounded_mentions

GUARDED_PERSONA = ("You are a museum guide at an information desk. You cannot see the visitor's picture. "
                   "Answer briefly and only from the catalog card. If the card does not say, answer "
                   "\"I can't tell\". Never name a painter, a title or a date that is not on the card.")

_KIND_WORDS = {  # checked in this order: "when was it painted" asks for the date, not the painter
    "date": r"\bwhen\b|\byear\b|\bdate\b|\bhow old\b|\bperiod\b|\bnăm\b|khi nào|thời gian|bao nhiêu tuổi",
    "medium": r"\bmedium\b|made of|\bmaterials?\b|\btechnique\b|\bcanvas\b|chất liệu|kỹ thuật|bằng gì",
    "title": r"\btitle\b|\bcalled\b|\bname of\b|\bwhich (?:art)?work\b|\btên\b|\btựa\b|tác phẩm nào",
    "artist": r"\bwho\b|\bartist\b|\bpainter\b|\bpainted\b|\bmade (?:this|it)\b|\bwhose\b|tác giả|họa sĩ|\bai\b|của ai",
}
_VISUAL = re.compile(r"colou?r|bright|dark|light|warm|cool|top|bottom|left|right|describe|see|show|look|"
                     r"màu|sáng|tối|nóng|lạnh|trên|dưới|trái|phải|mô tả|đây là gì", re.I)


def question_kind(question: str) -> str | None:
    """The card field a question asks for ("title", "artist", "date", "medium"), or None."""
    q = question.lower()
    for kind, pat in _KIND_WORDS.items():
        if re.search(pat, q):
            return kind
    return None


def looks_visual(question: str) -> bool:
    """True when the question asks about what the picture shows (colours, light, a description)."""
    return bool(_VISUAL.search(question))


def cant_read_notice(tokenizer: str) -> str:
    """The sentence the guarded guide says in the chat."""
    return (f"I can't read {tokenizer} image tokens yet, so I can't describe the picture; "
            f"I answer from the catalog card only.")


def fallback_answer(question: str, card: Card | str | None) -> str:
    """An answer built from the card alone: the asked field, else the whole card, else "I can't tell"."""
    c = Card.parse(card) if isinstance(card, str) else card
    if c is None and isinstance(card, str) and card.strip() and not card.strip().startswith("none"):
        return f"The catalog card says: {card.strip()}"          # a free-text card: quote it
    kind = question_kind(question)
    if kind is not None:
        return answer(kind, None, c)
    if c is None:
        return f"{CANT_TELL}: {UNKNOWN_WORK}, and the card is all I can go on."
    return f"The catalog card says: {c.title} by {c.artist} ({c.date}), {c.medium[0].lower() + c.medium[1:]}."


class GroundedRelease:
    """Release a streamed answer word by word while it stays grounded in ``card``.

        g = GroundedRelease(card)
        for piece in stream: shown = g.feed(piece); if g.cut: break
        g.final(question)       # the answer to show: the text, or the card answer if it was cut
    """

    def __init__(self, card: Card | str | None):
        self.card = card
        self.raw = ""          # everything the model produced
        self.shown = ""        # the grounded prefix released so far
        self.cut: list[str] = []   # the ungrounded mentions that stopped it

    def feed(self, piece: str) -> str:
        self.raw += piece
        end = max(self.raw.rfind(" "), self.raw.rfind("\n"))
        if end > len(self.shown) and not self.cut:
            self._check(self.raw[:end])
        return self.shown

    def _check(self, text: str) -> None:
        bad = ungrounded_mentions(text, self.card)
        if bad:
            self.cut = bad
        else:
            self.shown = text

    def final(self, question: str) -> str:
        if not self.cut:
            self._check(self.raw)
        return fallback_answer(question, self.card) if self.cut else self.raw.strip()
