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
