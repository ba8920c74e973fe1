"""LLM side: context budget (§1, §6.2); backends, vocabulary, cost model and chat come with §6–8."""
from .budget import ContextBudget, text_tokens_from_words

__all__ = ["ContextBudget", "text_tokens_from_words"]
