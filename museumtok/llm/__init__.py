"""LLM side (§1, §6, §8): context budget, image vocabulary, prompt formats, backends, cost, audit, chat.

Importing this package is cheap: no model is loaded until a backend is built (``make_backend``).
"""
from .audit import AuditLog, read_log, resolve_citations
from .backends import BackendError, ChatBackend, EchoBackend, HTTPBackend, TransformersBackend, make_backend
from .budget import BudgetPlan, ContextBudget, plan_budget, text_tokens_from_words
from .chat import ChatSession
from .vocab import IMAGE_END, IMAGE_START, ImageVocab, VocabError

__all__ = ["AuditLog", "BackendError", "BudgetPlan", "ChatBackend", "ChatSession", "ContextBudget", "EchoBackend",
           "HTTPBackend", "IMAGE_END", "IMAGE_START", "ImageVocab", "TransformersBackend", "VocabError",
           "make_backend", "plan_budget", "read_log", "resolve_citations", "text_tokens_from_words"]
