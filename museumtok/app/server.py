"""Serving details of the app that Gradio does not expose.

**Keep-alive.** Under load (8 users × 20 requests) one request in 160 once failed with httpx's
"peer closed connection without sending complete message body". That is the keep-alive race between
uvicorn and httpx: uvicorn closes an idle connection after ``timeout_keep_alive`` = 5 s, and httpx (which
``gradio_client`` and the browser-side fetches use) keeps pooled connections for up to 5 s too, so a
request sent on a pooled connection in the instant the server closes it is lost. Gradio builds its
``uvicorn.Config`` without that setting, so :func:`longer_keep_alive` raises uvicorn's default before
``launch()``: the server now outlives every client's idle connection and the race cannot happen.
"""
from __future__ import annotations

import functools

KEEP_ALIVE_S = 65   # longer than httpx's 5 s and browsers' ~60 s idle-connection expiry


def longer_keep_alive(seconds: int = KEEP_ALIVE_S) -> None:
    """Make every ``uvicorn.Config`` built afterwards use ``timeout_keep_alive=seconds`` unless told otherwise."""
    import uvicorn

    init = uvicorn.Config.__init__
    if getattr(init, "_museumtok_keep_alive", None) == seconds:
        return
    original = getattr(init, "__wrapped__", init)

    @functools.wraps(original)
    def patched(self, *args, **kwargs):
        kwargs.setdefault("timeout_keep_alive", seconds)
        original(self, *args, **kwargs)

    patched._museumtok_keep_alive = seconds
    uvicorn.Config.__init__ = patched
