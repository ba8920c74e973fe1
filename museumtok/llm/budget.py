"""The context budget of chapter 1 and §6.2: do the images and the text fit in the window?

The review's question: a 4k-token context, 10 images of 256 tokens and 1.5k words of description.
Images cost M tokens each plus their two delimiters (``<image>`` … ``</image>``); words cost about
1.3 tokens each in English BPE vocabularies (pass a real tokenizer's count when you have one).
"""
from __future__ import annotations

from dataclasses import dataclass

#: English words per BPE token is about 0.75, i.e. ~1.33 tokens per word (OpenAI's rule of thumb).
TOKENS_PER_WORD = 1.33
#: ``<image>`` and ``</image>`` around each image's tokens.
IMAGE_DELIMITERS = 2


def text_tokens_from_words(words: int, tokens_per_word: float = TOKENS_PER_WORD) -> int:
    return int(round(words * tokens_per_word))


@dataclass(frozen=True)
class ContextBudget:
    context: int = 4096           # context window in tokens
    images: int = 1               # number of images in the prompt
    M: int = 256                  # tokens per image
    text_tokens: int = 0          # question, description, history
    reserve_answer: int = 0       # tokens kept free for the answer
    delimiters: int = IMAGE_DELIMITERS

    @property
    def image_tokens(self) -> int:
        return self.images * (self.M + self.delimiters)

    @property
    def used(self) -> int:
        return self.image_tokens + self.text_tokens + self.reserve_answer

    @property
    def free(self) -> int:
        return self.context - self.used

    @property
    def fits(self) -> bool:
        return self.free >= 0

    def max_M(self) -> int:
        """Largest M per image that still fits with this text (0 if even M=0 does not)."""
        room = self.context - self.text_tokens - self.reserve_answer - self.images * self.delimiters
        return max(0, room // max(1, self.images))

    def max_images(self) -> int:
        """Most images of this M that still fit beside this text (0 if none does)."""
        room = self.context - self.text_tokens - self.reserve_answer
        return max(0, room // (self.M + self.delimiters))

    def summary(self) -> str:
        verdict = "fits" if self.fits else f"overflows by {-self.free} tokens"
        return (f"{self.images} image(s) × ({self.M}+{self.delimiters}) = {self.image_tokens} image tokens, "
                f"{self.text_tokens} text tokens, {self.reserve_answer} reserved for the answer: "
                f"{self.used} of {self.context} → {verdict}")


# ---- the chat's budget policy (§6.2) ------------------------------------------------------------
@dataclass
class BudgetPlan:
    """What goes into the next prompt: which history turns, which M, and what the visitor is told."""

    context: int                  # context window in tokens
    M: int | None                 # tokens per image actually used (None: no image)
    kept_turns: int               # most recent history turns kept
    dropped_turns: int            # oldest turns left out
    used: int                     # tokens of the planned prompt + the answer reserve
    fits: bool                    # False: even the question alone does not fit (nothing is cut)
    notices: list[str]            # shown to the visitor ("dropped 2 old turns", "M 256 -> 64")

    @property
    def free(self) -> int:
        return self.context - self.used

    def budget(self, text_tokens: int, reserve_answer: int) -> ContextBudget:
        return ContextBudget(context=self.context, images=0 if self.M is None else 1, M=self.M or 0,
                             text_tokens=text_tokens, reserve_answer=reserve_answer)


def plan_budget(
    context: int,
    question_tokens: int,
    turn_tokens: list[int] | tuple[int, ...] = (),
    M: int | None = None,
    M_options: list[int] | tuple[int, ...] = (),
    system_tokens: int = 0,
    reserve_answer: int = 128,
    delimiters: int = IMAGE_DELIMITERS,
) -> BudgetPlan:
    """Fit system prompt + image + history + question + answer reserve into ``context``.

    The policy of the issue: drop the oldest turns first, then lower M through the smaller values in
    ``M_options``; say what was done. The question is never cut: if it cannot fit even with no
    history and the smallest M, the plan says so (``fits=False``) and the caller refuses the turn
    with that message instead of sending a truncated prompt.

    ``turn_tokens`` are the token counts of the history turns, oldest first.
    """
    context, question_tokens = int(context), int(question_tokens)
    turns = [int(t) for t in turn_tokens]
    notices: list[str] = []

    def image_cost(m):
        return 0 if m is None else m + delimiters

    def total(m, kept):
        return system_tokens + image_cost(m) + sum(turns[len(turns) - kept:]) + question_tokens + reserve_answer

    kept = len(turns)
    while kept > 0 and total(M, kept) > context:
        kept -= 1
    if kept < len(turns):
        notices.append(f"the {len(turns) - kept} oldest turn(s) were left out to fit the {context}-token context")
    m = M
    if total(m, kept) > context and M is not None:
        smaller = sorted((x for x in M_options if x < M), reverse=True)
        for cand in smaller:
            m = cand
            if total(m, kept) <= context:
                break
        if m != M:
            notices.append(f"the image is sent with M={m} tokens instead of {M} to fit the context")
    fits = total(m, kept) <= context
    if not fits:
        notices.append(
            f"the question ({question_tokens} tokens) does not fit: system {system_tokens} + image "
            f"{image_cost(m)} + question + {reserve_answer} reserved for the answer exceed the "
            f"{context}-token context; please ask a shorter question")
    return BudgetPlan(context=context, M=m, kept_turns=kept, dropped_turns=len(turns) - kept,
                      used=total(m, kept), fits=fits, notices=notices)
