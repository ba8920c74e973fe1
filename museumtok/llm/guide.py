"""What the museum guide is asked and how it answers (review §7.1–7.3, §11): one source for the SFT
data, the chat evaluation (``museumtok eval chat``) and the chat's guard.

    question kind ─┬─ visual  (colour, brightness, warmth, light, layout): facts computed from the pixels
                   ├─ card    (title, artist, date, medium): copied from the catalog card in the prompt
                   ├─ refuse  (price, the painter's lunch, …): neither card nor image can answer
                   └─ describe: 2–3 sentences joining the card and the visual facts

Every kind has several English phrasings and Vietnamese ones, split into the phrasings the guide is
trained on (``"train"``) and phrasings kept for evaluation only (``"heldout"``). Answers are
sentences built from the facts, so a free-generated answer is scored by reading those facts back out
of it (:func:`read_colours`, :func:`read_side`, …) rather than by ranking fixed strings.

:func:`ungrounded_mentions` lists the names, titles and dates an answer gives that are not in the
card of the prompt (for a work not in the catalog: any name at all); it is both the hallucination
measure of the evaluation and the check of the chat's guard.
"""
from __future__ import annotations

import random
import re
import unicodedata
from functools import lru_cache
from typing import Iterable, Sequence

import torch

from ..data.catalog import Card
from .sft_data import PALETTE, brightest_side, brightness, warmth

VISUAL_KINDS = ("colour", "brightness", "warmth", "light", "layout")
CARD_KINDS = ("title", "artist", "date", "medium")
OTHER_KINDS = ("refuse", "describe")
KINDS = VISUAL_KINDS + CARD_KINDS + OTHER_KINDS
SIDES = ("left", "right", "top", "bottom")

# ---- phrasings ---------------------------------------------------------------------------------------
#: kind -> {"train": [...], "heldout": [...], "vi_train": [...], "vi_heldout": [...]}
PHRASINGS: dict[str, dict[str, list[str]]] = {
    "colour": {
        "train": ["What colours dominate this painting?", "What is the main colour here?",
                  "Which colour do you see most?", "What colours are in this picture?",
                  "Which colours stand out in this image?", "Tell me the dominant colours.",
                  "What is the dominant colour of this detail?", "Mostly what colour is it?",
                  "Can you name the main colours of the artwork?", "What colour is this?",
                  "Which colour is there most of?", "What colours can you see?", "Which colours does the artist use most?", "Tell me about the colours.", "What is the colour scheme?", "What colour dominates?", "Which two colours are strongest here?", "What's the main colour?", "Describe the colours of this painting.", "What colours is it painted in?"],
        "heldout": ["What are the most common colours in the picture?", "Which hues fill most of the canvas?",
                    "Name the two colours that cover most of this image."],
        "vi_train": ["Màu nào chiếm ưu thế trong bức tranh này?", "Màu chủ đạo ở đây là gì?",
                     "Bức tranh có những màu gì?", "Bạn thấy màu nào nhiều nhất?",
                     "Những màu nào nổi bật trong bức tranh?", "Cho tôi biết màu sắc của bức ảnh.", "Màu gì nhiều nhất?", "Tác phẩm chủ yếu có màu gì?"],
        "vi_heldout": ["Hai màu nào phủ phần lớn bức ảnh?", "Màu sắc chính của tác phẩm là gì?"],
    },
    "brightness": {
        "train": ["Is this picture bright or dark?", "Is the image light or dark overall?",
                  "How bright is this painting?", "Is this detail bright or dark?",
                  "Would you call this image bright or dark?", "Is it a dark picture?",
                  "Is the painting well lit or dim?", "How light is the picture overall?",
                  "Is it light or dark?", "Is the picture dim or bright?", "Is this image dark overall?", "How much light is in this picture overall?", "Would you say the picture is dark?", "Is the overall tone light or dark?", "Bright or dark?", "Is this a gloomy picture or a bright one?", "Is the scene dark?"],
        "heldout": ["Overall, is the scene light or gloomy?", "Is this a bright image?",
                    "How dark is this artwork overall?"],
        "vi_train": ["Bức tranh này sáng hay tối?", "Tổng thể bức ảnh sáng hay tối?",
                     "Bức tranh có tối không?",
                     "Ảnh này sáng không?", "Bức tranh sáng sủa hay u ám?", "Nhìn chung bức tranh tối hay sáng?", "Bức ảnh có sáng không?"],
        "vi_heldout": ["Hình ảnh này trông sáng hay u tối?", "Độ sáng của tác phẩm thế nào?"],
    },
    "warmth": {
        "train": ["Are the colours warm or cool?", "Is the palette warm or cool?",
                  "Does this painting feel warm or cold in colour?", "Is this a warm or a cool picture?",
                  "Are the tones warm or cool?", "Is the colour temperature warm or cool?",
                  "Warm or cool?", "Does it use warm colours or cool colours?", "Is the palette on the warm side?", "Are these cold colours?", "Is the colour warm or cold?", "Do the colours feel warm?", "Is this painted in cool tones?"],
        "heldout": ["Would you describe the palette as warm or as cool?", "Warm colours or cool colours here?",
                    "Is the colour scheme on the warm side or the cool side?"],
        "vi_train": ["Gam màu nóng hay lạnh?", "Bức tranh dùng màu nóng hay màu lạnh?",
                     "Tông màu ấm hay lạnh?",
                     "Màu sắc ấm hay lạnh?", "Bức ảnh dùng tông nóng hay tông lạnh?", "Gam màu của bức tranh là gì, nóng hay lạnh?", "Bức tranh có màu ấm không?"],
        "vi_heldout": ["Bảng màu của tác phẩm nóng hay lạnh?", "Màu sắc ở đây ấm hay mát?"],
    },
    "light": {
        "train": ["Where does the light fall?", "Where is the brightest part of the picture?",
                  "Which side is the brightest: left, right, top or bottom?", "Where is it lightest?",
                  "Is the light on the left, the right, the top or the bottom?",
                  "Which part of the image is the brightest?", "Where is the picture lit most?",
                  "Where is the brightest part of this detail: left, right, top or bottom?",
                  "Where is the light?", "Which side is lit?", "Which part is lightest?", "Where does the light come from?", "Is the top or the bottom brighter?", "Is the left or the right side brighter?", "Where are the bright areas?", "Which half of the picture is brightest?", "Where is the strongest light in this image?"],
        "heldout": ["Which area of the painting catches the most light?", "Where is the image brightest?",
                    "On which side is the light strongest?"],
        "vi_train": ["Ánh sáng rơi vào đâu?", "Phần nào của bức tranh sáng nhất?",
                     "Chỗ sáng nhất ở bên trái, bên phải, phía trên hay phía dưới?",
                     "Phía nào sáng hơn?", "Ánh sáng ở đâu trong bức tranh?", "Nửa nào của bức ảnh sáng nhất?", "Chỗ nào sáng nhất?"],
        "vi_heldout": ["Ánh sáng tập trung ở phía nào?", "Vùng nào trong ảnh sáng nhất?"],
    },
    "layout": {
        "train": ["What colour is the top, and what colour is the bottom?",
                  "Describe the colours at the top and at the bottom of the picture.",
                  "What is at the top and what is at the bottom, in colour?",
                  "Which colour fills the upper half and which the lower half?",
                  "How do the top and the bottom of the image differ in colour?",
                  "What colours are the upper and the lower part?",
                  "What colour is at the top and at the bottom?", "What is the colour of the top half? And the bottom half?", "Compare the colours of the upper and lower parts.", "What colour is the top? What colour is the bottom?", "Which colour is above and which is below?", "What colours are at the top and the bottom of the image?", "What does the top look like in colour, and the bottom?"],
        "heldout": ["Tell me the colour of the upper half and of the lower half.",
                    "Top half versus bottom half: which colours?",
                    "What colour dominates above, and what below?"],
        "vi_train": ["Phía trên màu gì, phía dưới màu gì?", "Nửa trên và nửa dưới của bức tranh có màu gì?",
                     "Màu ở phần trên và phần dưới bức ảnh là gì?",
                     "Màu ở trên và màu ở dưới là gì?", "Phần trên màu gì? Phần dưới màu gì?", "So sánh màu nửa trên và nửa dưới.", "Phía trên và phía dưới bức ảnh có màu gì?"],
        "vi_heldout": ["Phần trên và phần dưới tác phẩm khác nhau về màu thế nào?",
                       "Nửa trên màu gì và nửa dưới màu gì?"],
    },
    "title": {
        "train": ["What is the title of this artwork?", "What is this painting called?", "What's this work's name?",
                  "Which artwork is this?", "Do you know the title?", "What is the name of this picture?",
                  "What am I looking at? Which work is it?", "Title?",
                  "What's it called?", "Which painting is this?", "What is this artwork?", "Do you know what this work is called?", "Tell me the name of this painting.", "What's the title?", "Which work am I looking at?"],
        "heldout": ["Under what title is this work known?", "Can you tell me what this piece is called?",
                    "What is the name of the artwork?"],
        "vi_train": ["Tác phẩm này tên là gì?", "Bức tranh này có tên là gì?", "Tên của tác phẩm là gì?",
                     "Bức này tên gì?", "Cho tôi biết tên tác phẩm.", "Đây là bức tranh nào?", "Tác phẩm này gọi là gì?"],
        "vi_heldout": ["Tựa đề của bức tranh là gì?", "Đây là tác phẩm nào?"],
    },
    "artist": {
        "train": ["Who made this artwork?", "Who painted this?", "Who is the artist?", "Who created this work?",
                  "Which painter made this?", "Do you know the artist?", "By whom is this painting?",
                  "Whose work is this?",
                  "Who's the artist?", "Who made it?", "Who did this painting?", "Which artist made this?", "Who is it by?", "Tell me who painted it.", "Who is the author of this work?"],
        "heldout": ["Who is the painter of this picture?", "Which artist is behind this piece?",
                    "Can you tell me who made it?"],
        "vi_train": ["Ai đã vẽ bức tranh này?", "Tác giả của tác phẩm là ai?", "Họa sĩ là ai?",
                     "Ai vẽ bức này?", "Tác giả là ai?", "Ai đã làm ra tác phẩm này?", "Bức tranh do ai vẽ?"],
        "vi_heldout": ["Bức tranh này của ai?", "Ai là người sáng tác tác phẩm này?"],
    },
    "date": {
        "train": ["When was this made?", "When was it painted?", "What year is this artwork from?",
                  "How old is this painting?", "From which period is this work?", "What is the date of this work?",
                  "What year was it made?", "When was this created?", "When is it from?", "How old is it?", "What's the date of this painting?", "Which year is this from?", "When did this get painted?"],
        "heldout": ["In which year was this piece created?", "When did the artist make it?",
                    "What date does the catalog give for it?"],
        "vi_train": ["Tác phẩm này được vẽ năm nào?", "Bức tranh ra đời khi nào?", "Tác phẩm có từ năm nào?",
                     "Năm nào?", "Tác phẩm được tạo ra khi nào?", "Bức tranh này có từ bao giờ?", "Tác phẩm ra đời năm nào?"],
        "vi_heldout": ["Bức tranh được sáng tác vào thời gian nào?", "Tác phẩm này bao nhiêu tuổi?"],
    },
    "medium": {
        "train": ["What is it made of?", "What medium is this?", "What materials were used?",
                  "Is this oil on canvas?", "What technique is this work in?", "What is the medium of this artwork?",
                  "What is it painted on?", "What materials is it?", "Is this a painting or a print?", "What's the medium?", "What is this made with?", "What kind of work is this: oil, print, ink?", "What technique was used?"],
        "heldout": ["What material is the artwork made with?", "Which medium did the artist use?",
                    "What is this piece painted on?"],
        "vi_train": ["Tác phẩm được làm bằng chất liệu gì?", "Chất liệu của bức tranh là gì?",
                     "Bức tranh vẽ bằng gì?",
                     "Chất liệu là gì?", "Tác phẩm làm bằng gì?", "Bức này vẽ trên chất liệu gì?", "Kỹ thuật của bức tranh là gì?"],
        "vi_heldout": ["Họa sĩ đã dùng chất liệu nào?", "Tác phẩm này dùng kỹ thuật gì?"],
    },
    "refuse": {
        "train": ["What is the price of this painting?", "How many dollars would this sell for?",
                  "What did the artist have for breakfast?", "What was the painter's favourite food?",
                  "What was the weather like on the day it was painted?", "How many people have seen it this year?",
                  "What was the painter thinking while painting?", "Who owned it in 1950?",
                  "What is the name of the painter's dog?", "How long did it take to paint?",
                  "What insurance value does it have?", "Which music did the artist listen to?",
                  "How much does it cost?", "What is it worth today?", "What did the painter have for lunch?", "What did the artist eat while painting?", "Was the painter happy that day?", "How much money is it?", "Who will buy it next?", "What was the painter's phone number?", "How tall was the painter?", "What is the artist's favourite colour?", "Did it rain on the day it was painted?"],
        "heldout": ["How much is it worth?", "What did the painter eat that day?",
                    "What was the artist's mood that morning?"],
        "vi_train": ["Bức tranh này giá bao nhiêu tiền?", "Họa sĩ đã ăn sáng món gì?",
                     "Hôm vẽ bức tranh trời thế nào?", "Họa sĩ nghĩ gì khi vẽ?",
                     "Bức tranh giá bao nhiêu?", "Họa sĩ ăn gì khi vẽ?", "Họa sĩ có vui không hôm đó?", "Giá trị của tác phẩm là bao nhiêu?", "Ai sẽ mua bức tranh này?", "Họa sĩ thích món ăn gì?"],
        "vi_heldout": ["Tác phẩm này đáng giá bao nhiêu?", "Hôm đó họa sĩ đã ăn gì?"],
    },
    "describe": {
        "train": ["Describe what is in the picture.", "Tell me about this artwork.", "Describe this painting.",
                  "What can you tell me about this image?", "Give me a short description of this work.",
                  "Can you describe this for me?", "What is this?", "Tell me about what I am looking at.",
                  "Describe it.", "What do you see?", "Tell me about it.", "Describe this image for me.", "What is this picture?", "Give me a description.", "What's in this image?", "Can you tell me about this painting?", "Explain this artwork to me."],
        "heldout": ["Could you describe the artwork in a few sentences?", "Introduce this piece to me.",
                    "What should I know about this picture?"],
        "vi_train": ["Hãy mô tả bức tranh này.", "Kể cho tôi về tác phẩm này.", "Đây là gì?",
                     "Bạn có thể mô tả hình ảnh này không?",
                     "Mô tả bức tranh.", "Bạn thấy gì?", "Kể về bức ảnh này.", "Đây là tác phẩm gì?", "Mô tả tác phẩm cho tôi."],
        "vi_heldout": ["Giới thiệu ngắn về tác phẩm này.", "Hãy cho tôi biết về bức tranh này."],
    },
}
PHRASING_SETS = ("train", "heldout", "vi_train", "vi_heldout")


def phrasings(kind: str, which: str | Sequence[str] = ("train", "vi_train")) -> list[str]:
    """The phrasings of ``kind`` in one or several sets (see :data:`PHRASING_SETS`)."""
    sets = (which,) if isinstance(which, str) else tuple(which)
    return [q for s in sets for q in PHRASINGS[kind][s]]


# ---- the catalog card ----------------------------------------------------------------------------
CARD_LINE = "Catalog card: "
NO_CARD = "none (this work is not in the catalog)"


def card_line(card: "Card | str | None") -> str:
    """The prompt line for a card (``None``: the explicit "not in the catalog" line)."""
    if card is None:
        return CARD_LINE + NO_CARD
    return CARD_LINE + (card.text() if isinstance(card, Card) else str(card))


# ---- visual facts ------------------------------------------------------------------------------------
def colour_shares(x: torch.Tensor) -> list[tuple[str, float]]:
    """Palette colours by the share of pixels nearest to them, largest first: [(name, share), …]."""
    pal = torch.tensor(list(PALETTE.values()))                      # (P, 3)
    px = x.float().reshape(3, -1).T                                 # (H*W, 3)
    counts = torch.bincount(torch.cdist(px, pal).argmin(1), minlength=len(pal)).float()
    order = counts.argsort(descending=True)
    return [(list(PALETTE)[int(i)], float(counts[i] / counts.sum())) for i in order]


def light_margin(x: torch.Tensor) -> float:
    """How much brighter (mean luma) the brightest half is than the half opposite it: near 0 the light is
    spread evenly and "where the light falls" has no clear answer."""
    from .sft_data import luma

    y = luma(x)
    H, W = y.shape
    m = {"left": y[:, : W // 2].mean(), "right": y[:, W - W // 2:].mean(), "top": y[: H // 2].mean(),
         "bottom": y[H - H // 2:].mean()}
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    side = brightest_side(x)
    return float(m[side] - m[opposite[side]])


def visual_facts(x: torch.Tensor) -> dict[str, object]:
    """Everything the visual answers say about one image (3, H, W) in [0, 1] (``light_margin``: how clear
    the brightest side is, kept for the evaluation's breakdown)."""
    shares = colour_shares(x)
    H = x.shape[1]
    return {
        "light_margin": round(light_margin(x), 4),
        "colour": (shares[0][0], shares[1][0] if shares[1][1] > 0 else shares[0][0]),
        "brightness": brightness(x),
        "warmth": warmth(x),
        "light": brightest_side(x),
        "layout": (colour_shares(x[:, : H // 2])[0][0], colour_shares(x[:, H - H // 2:])[0][0]),
    }


# ---- answers -----------------------------------------------------------------------------------------
SIDE_PHRASE = {"left": "on the left side", "right": "on the right side", "top": "at the top", "bottom": "at the bottom"}
CANT_TELL = "I can't tell"
UNKNOWN_WORK = "this work is not in our catalog"
CANT_SEE = "I can't read this picture's tokens yet"


def _templates(kind: str) -> list[str]:
    return {
        "colour": ["It is mostly {c1}, with some {c2}.", "The main colour is {c1}, followed by {c2}.",
                   "Mostly {c1}, and then {c2}."],
        "brightness": ["Overall the picture is {b}.", "It is a {b} image overall."],
        "warmth": ["The palette is {w}.", "The colours are {w} overall."],
        "light": ["The light falls {side}.", "The brightest part is {side}."],
        "layout": ["The top is mostly {top} and the bottom is mostly {bottom}.",
                   "Above it is mostly {top}; below it is mostly {bottom}."],
        "title": ["This is {title}.", "The catalog card gives the title {title}."],
        "artist": ["It was made by {artist}.", "The artist is {artist}."],
        "date": ["It dates from {date}.", "The catalog card dates it to {date}."],
        "medium": ["The medium is {medium}.", "It is made in {medium}."],
    }[kind]


def answer(kind: str, facts: dict | None, card: Card | None, rng: random.Random | None = None) -> str:
    """The guide's answer, in sentences, for one question of ``kind``.

    ``facts``: :func:`visual_facts` of the image (None when the prompt holds no readable image);
    ``card``: the catalog card in the prompt (None for a work not in the catalog)."""
    rng = rng or random.Random(0)
    if kind in VISUAL_KINDS and facts is None:
        return f"{CANT_SEE}, so I can't tell {_visual_topic(kind)}."
    if kind == "colour":
        c1, c2 = facts["colour"]
        return rng.choice(_templates(kind)).format(c1=c1, c2=c2 if c2 != c1 else "a little else")
    if kind == "brightness":
        return rng.choice(_templates(kind)).format(b=facts["brightness"])
    if kind == "warmth":
        return rng.choice(_templates(kind)).format(w=facts["warmth"])
    if kind == "light":
        return rng.choice(_templates(kind)).format(side=SIDE_PHRASE[facts["light"]])
    if kind == "layout":
        top, bottom = facts["layout"]
        return rng.choice(_templates(kind)).format(top=top, bottom=bottom)
    if kind in CARD_KINDS:
        if card is None:
            what = {"title": "its title", "artist": "who made it", "date": "when it was made",
                    "medium": "what it is made of"}[kind]
            return f"{CANT_TELL}: {UNKNOWN_WORK}, so I don't know {what}."
        v = getattr(card, kind)
        return rng.choice(_templates(kind)).format(**{kind: v[0].lower() + v[1:] if kind == "medium" else v})
    if kind == "refuse":
        return f"{CANT_TELL}: neither the catalog card nor the picture says that."
    if kind == "describe":
        return describe(facts, card)
    raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(KINDS)}")


def _visual_topic(kind: str) -> str:
    return {"colour": "its colours", "brightness": "how bright it is", "warmth": "whether it is warm or cool",
            "light": "where the light falls", "layout": "what is at the top or the bottom"}[kind]


def describe(facts: dict | None, card: Card | None) -> str:
    """2–3 sentences: who/what/when from the card (or that the work is unknown), then what the tokens show."""
    if card is not None:
        first = f"This is {card.title} by {card.artist} ({card.date}), {card.medium[0].lower() + card.medium[1:]}."
    else:
        first = f"I don't recognise this work: it is not in our catalog, so I can't say who made it."
    if facts is None:
        return f"{first} {CANT_SEE}, so I can't describe what it shows."
    c1, c2 = facts["colour"]
    colours = f"{c1} and {c2}" if c2 != c1 else c1
    return (f"{first} The picture is mostly {colours}, {facts['brightness']} and {facts['warmth']}, "
            f"with the light falling {SIDE_PHRASE[facts['light']]}.")


# ---- training dialogues --------------------------------------------------------------------------------
#: How often each kind is asked in a training turn (visual 50%, card 24%, refusals 10%, descriptions 16%);
#: the two layout questions, which need where the tokens sit, are asked most.
KIND_WEIGHTS: dict[str, float] = {
    "colour": 0.07, "brightness": 0.06, "warmth": 0.05, "light": 0.18, "layout": 0.14,
    "title": 0.07, "artist": 0.06, "date": 0.06, "medium": 0.05, "refuse": 0.10, "describe": 0.16,
}


def sample_dialogue(rng: random.Random, facts: dict | None, card: Card | None, turns: int = 3,
                    vi_share: float = 0.25, which: str = "train") -> list[tuple[str, str]]:
    """``turns`` (question, answer) pairs about one image: kinds drawn by :data:`KIND_WEIGHTS` without
    repeats, each phrased in English or (``vi_share`` of the time) Vietnamese from the ``which`` set."""
    kinds = list(KIND_WEIGHTS)
    chosen: list[str] = []
    while len(chosen) < min(turns, len(kinds)):
        k = rng.choices(kinds, weights=[KIND_WEIGHTS[x] for x in kinds])[0]
        if k not in chosen:
            chosen.append(k)
    out = []
    for k in chosen:
        pool = PHRASINGS[k]["vi_" + which] if rng.random() < vi_share else PHRASINGS[k][which]
        q = rng.choice(pool)
        if rng.random() < 0.15:                    # visitors type casually: no capital, no question mark
            q = (q[0].lower() + q[1:]).rstrip("?.").strip()
        out.append((q, answer(k, facts, card, rng)))
    return out


# ---- reading facts back out of an answer ---------------------------------------------------------------
_COLOUR_WORDS = {**{c: c for c in PALETTE}, "gray": "grey", "golden": "yellow", "gold": "yellow",
                 "violet": "purple", "navy": "blue", "beige": "brown", "tan": "brown", "ochre": "brown",
                 "crimson": "red", "scarlet": "red", "turquoise": "blue", "cyan": "blue", "pink": "red"}
_VI_SIDE = {"trái": "left", "phải": "right", "trên": "top", "dưới": "bottom"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-zà-ỹ]+", text.lower())


def read_colours(text: str) -> list[str]:
    """Palette colours in the order the answer first names them (synonyms mapped: gray → grey, …)."""
    out: list[str] = []
    for w in _words(text):
        c = _COLOUR_WORDS.get(w)
        if c and c not in out:
            out.append(c)
    return out


def read_choice(text: str, options: Sequence[str]) -> str | None:
    """The option named first in ``text`` (whole words), or None."""
    for w in _words(text):
        if w in options:
            return w
        if w in _VI_SIDE and _VI_SIDE[w] in options:
            return _VI_SIDE[w]
        if w in ("light", "lit") and "bright" in options and "dark" in options:
            continue
    return None


def read_side(text: str) -> str | None:
    return read_choice(re.sub(r"\b(upper|above)\b", "top", re.sub(r"\b(lower|below)\b", "bottom", text.lower())), SIDES)


def read_layout(text: str) -> tuple[str | None, str | None]:
    """(top colour, bottom colour): the first colour named after "top"/"above"/"upper" and after
    "bottom"/"below"/"lower"."""
    t = text.lower()
    out = []
    for keys in (("top", "above", "upper"), ("bottom", "below", "lower")):
        pos = [m.end() for k in keys for m in re.finditer(rf"\b{k}\b", t)]
        cols = read_colours(t[min(pos):]) if pos else []
        out.append(cols[0] if cols else None)
    return out[0], out[1]


def says_cant_tell(text: str) -> bool:
    """An explicit refusal: "I can't tell", "I don't know", "cannot say", …"""
    return bool(re.search(r"\b(can(?:'|’)?t|cannot|can not|don(?:'|’)?t know|do not know|unable to|not sure)\b"
                          r"[^.]{0,40}\b(tell|say|know|read|see|answer)?", text.lower()))


def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def mentions(text: str, value: str) -> bool:
    """True when ``value`` (a title, artist, date, medium) appears in ``text``, ignoring case, accents and
    punctuation; a title's bracketed series name and a leading "The" may be left out."""
    t, v = f" {_norm(text)} ", _norm(value)
    if not v:
        return False
    core = _norm(re.sub(r"\(.*?\)", "", value))
    cands = {v, core, re.sub(r"^the ", "", core)}
    return any(c and f" {c} " in t for c in cands)


def score(kind: str, text: str, facts: dict | None, card: Card | None) -> dict[str, float]:
    """Scores of one free-text answer; keys depend on ``kind`` (1.0 right, 0.0 wrong)."""
    if kind == "colour":
        got = read_colours(text)
        c1, c2 = facts["colour"]
        return {"colour_top1": float(bool(got) and got[0] == c1),
                "colour_top2": float(set(got[:2]) == {c1, c2} if c2 != c1 else bool(got) and got[0] == c1)}
    if kind in ("brightness", "warmth"):
        opts = ("bright", "dark") if kind == "brightness" else ("warm", "cool")
        return {kind: float(read_choice(text, opts) == facts[kind])}
    if kind == "light":
        return {"light": float(read_side(text) == facts["light"])}
    if kind == "layout":
        return {"layout": float(read_layout(text) == tuple(facts["layout"]))}
    if kind in CARD_KINDS:
        if card is None:
            return {"unknown_refused": float(says_cant_tell(text))}
        return {kind: float(mentions(text, getattr(card, kind)))}
    if kind == "refuse":
        return {"refusal": float(says_cant_tell(text))}
    if kind == "describe":
        n = sentence_count(text)
        ok_card = card is None or (mentions(text, card.title) and mentions(text, card.artist))
        ok_visual = facts is None or (bool(read_colours(text)) and read_colours(text)[0] == facts["colour"][0])
        return {"describe_form": float(2 <= n <= 3 and ok_card and ok_visual), "describe_sentences": float(n)}
    raise ValueError(f"unknown question kind {kind!r}")


def sentence_count(text: str) -> int:
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", p)]
    return len(parts)


# ---- hallucinations ------------------------------------------------------------------------------------
#: Painters and sculptors a small LLM reaches for when it invents (beside every artist in the catalog).
FAMOUS_ARTISTS = (
    "Rembrandt", "Vermeer", "Van Gogh", "Vincent", "Picasso", "Monet", "Manet", "Renoir", "Cézanne", "Degas",
    "Gauguin", "Matisse", "Klimt", "Dalí", "Dali", "Frida", "Kahlo", "Diego Rivera", "Michelangelo", "Raphael",
    "Leonardo", "da Vinci", "Botticelli", "Caravaggio", "Titian", "Goya", "Velázquez", "Velazquez", "Rubens",
    "Turner", "Constable", "Hokusai", "Hiroshige", "Warhol", "Pollock", "Rothko", "Kandinsky", "Mondrian",
    "Magritte", "Munch", "Chagall", "Miró", "Miro", "Seurat", "Bosch", "Bruegel", "Brueghel", "Dürer", "Durer",
    "Holbein", "El Greco", "Modigliani", "Hopper", "Basquiat", "Haring", "Banksy", "Whistler", "Sargent",
    "Homer", "Delacroix", "Ingres", "David", "Courbet", "Millet", "Pissarro", "Sisley", "Cassatt", "Morisot",
    "Toulouse-Lautrec", "Schiele", "Klee", "Marc", "Friedrich", "Hals", "Van Eyck", "Giotto", "Fra Angelico",
    "O'Keeffe", "Kusama", "Hockney", "Lichtenstein", "Bacon", "Freud", "Rousseau", "Utamaro", "Picabia",
)
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-2][0-9])s?\b|\b\d{1,2}(?:st|nd|rd|th)[- ]century\b", re.I)
_PROPER = re.compile(r"(?<![.!?:]\s)(?<!^)(?<![\"“(])\b([A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)*)\b")
_NOT_NAMES = {"I", "Guide", "Visitor", "Catalog", "English", "Vietnamese", "Title", "Artist", "Date", "Medium",
              "The", "This", "It", "Mostly", "Overall", "Above", "Below"}


@lru_cache(maxsize=1)
def _catalog_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(artists, titles) of every catalog entry (artworks), read once."""
    try:
        from ..data.catalog import load_catalog

        es = load_catalog(collection="artworks")
    except Exception:   # noqa: BLE001 — no catalog: only the fixed list of famous names is checked
        return (), ()
    return tuple({e.artist for e in es}), tuple({e.title for e in es})


def ungrounded_mentions(text: str, card: Card | str | None, extra_artists: Iterable[str] = ()) -> list[str]:
    """The names, titles and dates ``text`` gives that the card does not: catalog artists and titles,
    well-known painters, years and centuries, and (for a work not in the catalog) any other proper name.

    Matching ignores case, accents and punctuation; a mention counts as grounded when the card contains it."""
    c = Card.parse(card) if isinstance(card, str) else card
    card_text = c.text() if c is not None else (card or "") if isinstance(card, str) else ""
    known = bool(card_text.strip()) and not card_text.strip().startswith("none")
    out: list[str] = []
    artists, titles = _catalog_names()
    for name in list(artists) + list(FAMOUS_ARTISTS) + list(extra_artists):
        if mentions(text, name) and not mentions(card_text, name):
            out.append(name)
    for title in titles:
        if len(_norm(title)) >= 8 and mentions(text, title) and not mentions(card_text, title):
            out.append(title)
    for m in _YEAR.finditer(text):
        if not mentions(card_text, m.group(0).rstrip("s")):
            out.append(m.group(0))
    for m in _PROPER.finditer(text):
        w = m.group(1)
        if w in _NOT_NAMES or w.lower() in _COLOUR_WORDS or mentions(card_text, w):
            continue
        if not known or not any(mentions(card_text, part) for part in w.split()):
            out.append(w)
    seen: list[str] = []
    for o in out:               # one entry per mention, longest form first ("Van Gogh" over "Gogh")
        if not any(_norm(o) in _norm(s) for s in seen):
            seen = [s for s in seen if _norm(s) not in _norm(o)] + [o]
    return seen
