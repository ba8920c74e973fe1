"""What a visitor's question asks for, so that a Vietnamese question reaches the guide in the words it learned.

The embedded guide (SmolLM2-135M with a §7 adapter) was fine-tuned mostly on English phrasings; measured
with ``museumtok eval chat`` it answers held-out English catalog questions (title, artist, date, medium)
correctly 90–97% of the time but the same questions in Vietnamese only 21–29%: a 135M model does not
carry much Vietnamese. The staff and the board are Vietnamese, so the chat does what an information desk
would do: it recognises which of the guide's question types a Vietnamese question belongs to, with
keyword rules written from Vietnamese museum vocabulary (no translation model, nothing downloaded), and
gives the model that type's canonical English question. The visitor's own words are what the audit log
and the chat history keep; the answer may stay in English (as the issue allows).

    "Ai là người sáng tác tác phẩm này?" ─► kind "artist" ─► model reads "Who made this artwork?"

A question the rules do not place, and every English question, goes to the model unchanged.
"""
from __future__ import annotations

import re
import unicodedata

from .guide import PHRASINGS

#: letters that only Vietnamese uses among the app's two languages (after NFC normalisation)
_VI_LETTERS = re.compile(r"[ăâđêôơưĂÂĐÊÔƠƯ]|[àáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ]",
                         re.I)

#: phrases whose words would mislead the rules: "sáng tác" (to create) is not "sáng" (bright),
#: "ăn sáng" (breakfast) is not about light; they are rewritten before matching
_REWRITE = (("sáng tác", "vẽ"), ("sáng tạo", "vẽ"), ("ăn sáng", "ăn"), ("hoạ", "họa"), ("kĩ thuật", "kỹ thuật"))

#: checked in this order (the first that matches wins): questions the guide must refuse first, then the
#: picture's own questions from the most specific (top vs bottom, where the light is) to the most general
#: (colours), then the card's fields, then a description (and any other "… gì?")
VI_RULES: tuple[tuple[str, str], ...] = (
    ("refuse", r"\bgiá\b|\btiền\b|\bbán\b|\bmua\b|\băn\b|thời tiết|\btrời\b|nghĩ gì|\bvui\b|\bbuồn\b|tâm trạng|"
               r"bảo hiểm|bao lâu|\bthích\b|con chó|điện thoại|chiều cao|bao nhiêu người"),
    ("light", r"ánh sáng|sáng nhất|(?:phía nào|ở đâu|chỗ nào|vùng nào|phần nào|bên nào).*\bsáng\b|"
              r"\bsáng\b.*(?:phía nào|ở đâu|chỗ nào|vùng nào|phần nào|bên nào)"),
    ("layout", r"(?:\btrên\b.*\bdưới\b|\bdưới\b.*\btrên\b)"),
    ("warmth", r"\bnóng\b|\blạnh\b|\bấm\b|\bmát\b"),
    ("brightness", r"\bsáng\b|\btối\b|u ám|\bu tối\b"),
    ("colour", r"\bmàu\b|sắc màu|màu sắc"),
    ("date", r"năm nào|khi nào|bao giờ|thời gian|thời kỳ|thời điểm|bao nhiêu tuổi|niên đại|thế kỷ|\bnăm\b|"
             r"bao lâu rồi|từ lúc nào"),
    ("medium", r"chất liệu|kỹ thuật|bằng gì|vẽ trên|làm bằng|làm từ|sơn dầu|vật liệu"),
    ("artist", r"\bai\b|tác giả|họa sĩ|người vẽ|nghệ sĩ|danh họa"),
    ("title", r"\btên\b|\btựa\b|nhan đề|tác phẩm nào|bức tranh nào|bức nào|gọi là gì"),
    ("describe", r"mô tả|\bkể\b|giới thiệu|là gì|thấy gì|cho tôi biết về|nói về|nói cho tôi|\bgì\s*\??\s*$"),
)
_VI_COMPILED = tuple((kind, re.compile(pat, re.I)) for kind, pat in VI_RULES)


def is_vietnamese(text: str) -> bool:
    """True when the text uses a letter or tone mark only Vietnamese has (of the app's two languages)."""
    return bool(_VI_LETTERS.search(unicodedata.normalize("NFC", text or "")))


def vietnamese_kind(question: str) -> str | None:
    """The guide's question type of a Vietnamese question (a key of :data:`~museumtok.llm.guide.PHRASINGS`),
    or None when no rule places it."""
    q = unicodedata.normalize("NFC", question or "").lower()
    for a, b in _REWRITE:
        q = q.replace(a, b)
    for kind, pat in _VI_COMPILED:
        if pat.search(q):
            return kind
    return None


def canonical_question(kind: str) -> str:
    """The English question the guide learned first for a question type."""
    return PHRASINGS[kind]["train"][0]


def model_question(question: str) -> str:
    """What the model reads for a visitor's question: a placed Vietnamese question becomes its type's
    canonical English question; anything else is returned unchanged."""
    if not is_vietnamese(question):
        return question
    kind = vietnamese_kind(question)
    return canonical_question(kind) if kind is not None else question
