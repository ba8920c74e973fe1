"""The app's Context budget tab (chapter 1): how many images of M tokens fit an LLM's context window."""
from __future__ import annotations

from ..llm.budget import ContextBudget
from ..viz import budget_figure


def budget(context: int, images: int, M: int, text_tokens: int):
    """The context-budget bar on its own (the sliders of chapter 1): (plotly figure, summary), or
    (None, what is wrong)."""
    try:
        b = ContextBudget(context=int(context), images=int(images), M=int(M), text_tokens=int(text_tokens))
    except (TypeError, ValueError):
        return None, "context, images, M and text tokens must be whole numbers"
    return budget_figure(b), b.summary()
