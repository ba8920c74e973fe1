"""The interface every chat backend implements, and what they share (errors, a token estimate).

A backend is one chat model behind ``stream(messages)`` (text pieces) and ``count_tokens``; the
concrete ones live beside this module (:mod:`.echo`, :mod:`.hf`, :mod:`.http`) and
:func:`museumtok.llm.backends.make_backend` builds one from a spec string.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

Messages = list[dict]
ENV_VAR = "MUSEUMTOK_LLM"


class BackendError(RuntimeError):
    """A backend that cannot be built or reached; the message says what to do."""


class ChatBackend(ABC):
    """One chat model. Subclasses implement :meth:`stream` and :meth:`count_tokens`."""

    name: str = "backend"
    context_window: int = 8192       # tokens the model can attend to
    adds_image_tokens: bool = False  # True: ImageVocab tokens become single LLM tokens

    def __init__(self):
        self.last_stats: dict = {}

    @abstractmethod
    def stream(self, messages: Messages, max_new_tokens: int = 128, temperature: float = 0.0) -> Iterator[str]:
        """Yield the answer to ``messages`` piece by piece."""

    def generate(self, messages: Messages, max_new_tokens: int = 128, temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's context (approximate for HTTP backends)."""

    def attach_vocab(self, vocab, codebook=None, adapter: Path | None = None):
        """Make ``vocab``'s tokens known to the model when it can add tokens; returns ``vocab``.
        ``adapter``: a §7 SFT adapter folder for this vocab (used only by backends that can load it)."""
        return vocab

    #: one line for the app: which fine-tuned adapter (if any) reads the current image's tokens
    adapter_status: str = ""
    #: True when the model was taught to read the current image's tokens (an active §7 adapter); otherwise
    #: the chat's guard withholds them (:mod:`museumtok.llm.guard`)
    reads_image_tokens: bool = False
    #: True when the model reads the token grid row by row (a newline after each row)
    image_rows: bool = False

    def reset(self) -> None:
        """Forget any cached prompt state (a new visitor or a new image)."""

    def warm(self, messages: Messages) -> float:
        """Pre-fill whatever cache the backend keeps with the part of ``messages`` before the last
        question (system, card, image); returns the seconds spent (0: nothing to do)."""
        return 0.0

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


_WORDS = re.compile(r"<[^<>\s]{1,40}>|\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: angle-bracket tokens count 1, words and punctuation count 1 each."""
    return len(_WORDS.findall(text))
