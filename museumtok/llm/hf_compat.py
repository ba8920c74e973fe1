"""Small differences between transformers versions, in one place (imported by the backends and the SFT code,
so neither has to import the other)."""
from __future__ import annotations

import inspect


def cache_kwarg(model) -> str:
    """The name of the KV-cache argument of ``model.forward``: transformers 5.x renamed
    ``past_key_values`` to ``cache``; support both."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
