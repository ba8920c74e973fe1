"""A deterministic fake backend (tests, app development): it echoes the question word by word."""
from __future__ import annotations

import re
import time

from .base import ChatBackend, approx_tokens


class EchoBackend(ChatBackend):
    """A deterministic fake: answers "I see N image tokens. You asked: …" word by word."""

    name = "echo"
    reads_image_tokens = True      # a fake that "reads" them: it counts them

    def __init__(self, context_window: int = 4096, delay_s: float = 0.0):
        super().__init__()
        self.context_window = context_window
        self.delay_s = delay_s

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        t0 = time.perf_counter()
        text = "\n".join(str(m.get("content", "")) for m in messages)
        n_img = len(re.findall(r"<(?:[\w.\-]+:)?v\d+>", text))
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        question = re.sub(r"<image>.*?</image>", "", str(question), flags=re.S).strip()
        words = f"I see {n_img} image tokens. You asked: {question}".split(" ")[:max_new_tokens]
        ttft = None
        for i, w in enumerate(words):
            if self.delay_s:
                time.sleep(self.delay_s)
            if ttft is None:
                ttft = time.perf_counter() - t0
            yield w if i == 0 else " " + w
        dt = time.perf_counter() - t0
        self.last_stats = {"ttft_s": ttft or dt, "new_tokens": len(words), "prompt_tokens": approx_tokens(text),
                           "reused_tokens": 0, "tokens_per_s": len(words) / dt if dt > 0 else float("inf")}
