"""An OpenAI-compatible HTTP server as a chat backend (``http://host:port/v1[#model]``): vLLM,
``transformers serve``, llama.cpp's server, TGI or OpenAI, over ``httpx`` with streamed server-sent events."""
from __future__ import annotations

import json
import os
import re
import time
from contextlib import closing
from typing import Iterator

from .base import BackendError, ChatBackend, approx_tokens


#: HTTP statuses worth a retry, with every 5xx (the openai client's rule): timeout, conflict, rate limit
RETRY_STATUS = frozenset({408, 409, 429})
#: request fields a server may refuse by name; the client then drops the field and asks again (once each):
#: OpenAI's reasoning models refuse ``max_tokens``, older servers ``max_completion_tokens`` or ``stream_options``
OPTIONAL_FIELDS = ("stream_options", "max_completion_tokens", "max_tokens")
API_KEY_VAR = "MUSEUMTOK_LLM_API_KEY"


def api_key_from_env(base_url: str) -> str | None:
    """``$MUSEUMTOK_LLM_API_KEY``; ``$OPENAI_API_KEY`` only for api.openai.com, so that an OpenAI secret set
    for other tools is never sent to another server (vLLM, a colleague's GPU box)."""
    from urllib.parse import urlparse

    if os.environ.get(API_KEY_VAR):
        return os.environ[API_KEY_VAR]
    if (urlparse(base_url).hostname or "").endswith("api.openai.com"):
        return os.environ.get("OPENAI_API_KEY") or None
    return None


def server_error_text(resp) -> str:
    """The server's own words from an error response: OpenAI/vLLM/llama.cpp ``{"error": {"message"}}``,
    FastAPI ``{"detail": ...}`` (transformers serve), TGI ``{"error": "..."}``, else the raw body."""
    try:
        data = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:500] or resp.reason_phrase
    return _error_message(data)[:500]


def _error_message(data) -> str:
    if not isinstance(data, dict):
        return str(data)
    err = data.get("error", data.get("detail", data.get("message")))
    if isinstance(err, dict):
        return str(err.get("message") or err.get("msg") or err)
    if isinstance(err, list):                                  # FastAPI validation errors
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', e)}" if isinstance(e, dict)
                         else str(e) for e in err)
    return str(err if err is not None else data)


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (HTML Living Standard §9.2): ``field: value`` lines up to a
    blank line, several ``data`` lines joined by newlines, ``:`` comment lines (keep-alives) skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class StopCutter:
    """Cut streamed text before the first stop string, as the OpenAI API does (the stop string itself is
    not returned), holding back only the tail that may still grow into one. Servers differ: some return
    the stop string, some ignore ``stop``; the client applies it again so that every server answers alike."""

    def __init__(self, stop: str | list[str] | None):
        self.stops = [s for s in ([stop] if isinstance(stop, str) else (stop or [])) if s]
        self.buf = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """The text that is safe to show now ("" once a stop string was seen)."""
        if self.done or not self.stops:
            return "" if self.done else piece
        self.buf += piece
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf, self.done = self.buf[:min(hits)], "", True
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.buf.endswith(s[:k])), default=0)
        out, self.buf = self.buf[:len(self.buf) - keep], self.buf[len(self.buf) - keep:]
        return out

    def flush(self) -> str:
        out, self.buf = ("" if self.done else self.buf), ""
        return out


class HTTPBackend(ChatBackend):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, ``transformers serve``, llama.cpp's
    server, TGI, OpenAI), streamed with server-sent events over ``httpx``.

    Behaves as the ecosystem's clients do:

    * ``model=None`` (a spec without ``#model``): the first model that ``GET /v1/models`` lists; a server
      without that route gets no ``model`` field;
    * timeouts: ``connect_timeout_s`` to connect, ``timeout_s`` without a byte of the answer; retries of a
      refused connection and of HTTP 408/409/429/5xx before any text arrived, ``max_retries`` times with
      exponential backoff (``backoff_s`` × 2^n, ±25 %, or the server's ``Retry-After``);
    * an error becomes a :class:`BackendError` carrying the server's own message (the chat shows it);
    * ``max_completion_tokens`` and ``max_tokens`` both sent (a server that refuses one by name gets the other),
      ``stop`` strings sent and applied again to what comes back, usage asked for (``stream_options``) and
      read into :attr:`last_stats`;
    * the API key, if the server wants one, from ``$MUSEUMTOK_LLM_API_KEY`` (:func:`api_key_from_env`),
      never from the command line or a committed file.

    ``transport``: an ``httpx`` transport (tests pass ``httpx.MockTransport``)."""

    def __init__(self, base_url: str, model: str | None = None, context_window: int = 8192, timeout_s: float = 120.0,
                 api_key: str | None = None, connect_timeout_s: float = 10.0, max_retries: int = 2,
                 backoff_s: float = 0.5, stop: str | list[str] | None = None, transport=None):
        import httpx

        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.model = model or None            # None: asked from /v1/models on first use
        self.context_window = context_window
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.stop = stop                      # default stop strings of every call
        self.api_key = api_key if api_key is not None else api_key_from_env(self.base_url)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                    timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))
        self._discovered = model is not None
        self._dropped: set[str] = set()       # optional fields this server refused by name

    @property
    def name(self) -> str:
        return f"{self.model}@{self.base_url}" if self.model else self.base_url

    def count_tokens(self, text: str) -> int:
        """A conservative estimate: the server's BPE has no image words, so ``<ns:v312>`` costs several
        tokens (SmolLM2: ~6 for ``<v312>``); one token per 3.5 characters bounds that and English text."""
        return max(approx_tokens(text), -(-len(text) * 2 // 7))

    def close(self) -> None:
        self._client.close()

    # ---- requests, retries, errors -------------------------------------------------------------------
    def _delay(self, attempt: int, resp=None) -> float:
        import random

        if resp is not None:                   # the server's own wish first (OpenAI, vLLM behind a proxy)
            for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
                try:
                    return min(float(resp.headers[header]) * scale, 20.0)
                except (KeyError, ValueError):
                    pass
        return min(self.backoff_s * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False):
        """The response (status 200) after retries; a :class:`BackendError` with the server's text otherwise.
        A field of :data:`OPTIONAL_FIELDS` that the server refuses by name is dropped and the call repeated."""
        import httpx

        attempt = 0
        while True:
            payload = None if body is None else {k: v for k, v in body.items() if k not in self._dropped}
            try:
                resp = self._client.send(self._client.build_request(method, path, json=payload), stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as err:
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise BackendError(f"cannot reach the LLM server at {self.base_url} "
                                   f"({attempt + 1} tries): {err or type(err).__name__}") from err
            except httpx.TimeoutException as err:
                raise BackendError(f"the LLM server at {self.base_url} sent nothing for {self.timeout_s:.0f} s "
                                   f"(timeout)") from err
            except httpx.HTTPError as err:
                raise BackendError(f"the LLM server at {self.base_url} failed: {err}") from err
            if resp.status_code == 200:
                return resp
            try:
                resp.read()
                text = server_error_text(resp)
            except httpx.HTTPError as err:
                text = f"(error body unreadable: {err})"
            finally:
                resp.close()
            refused = self._refused_field(text, payload or {})
            if resp.status_code in (400, 422) and refused:
                self._dropped.add(refused)
                continue
            if (resp.status_code in RETRY_STATUS or resp.status_code >= 500) and attempt < self.max_retries:
                time.sleep(self._delay(attempt, resp))
                attempt += 1
                continue
            raise BackendError(f"the LLM server at {self.base_url} answered HTTP {resp.status_code}: {text}")

    @staticmethod
    def _refused_field(text: str, payload: dict) -> str | None:
        """The optional field an error message names first ("Unsupported parameter: 'max_tokens' … use
        'max_completion_tokens'"), if the request still has it (and still has the other token limit)."""
        found = []
        for f in OPTIONAL_FIELDS:
            other = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}.get(f)
            m = re.search(rf"(?<![\w]){f}(?![\w])", text)
            if m and f in payload and (other is None or other in payload):
                found.append((m.start(), f))
        return min(found)[1] if found else None

    def models(self) -> list[str]:
        """The model ids the server lists (``GET /v1/models``)."""
        with closing(self._send("GET", "models")) as resp:
            data = resp.json()
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    def resolve_model(self) -> str | None:
        """The model to ask for: the spec's, else the first one the server lists (asked once); None when the
        server has no ``/v1/models`` route (the request then names no model)."""
        if not self._discovered:
            try:
                ids = self.models()
            except BackendError as err:
                if "HTTP 404" not in str(err):
                    raise
                ids = []
            self.model = ids[0] if ids else None
            self._discovered = True
        return self.model

    def _body(self, messages, max_new_tokens, temperature, stream, stop) -> dict:
        model = self.resolve_model()
        stop = self.stop if stop is None else stop
        body = {"messages": messages, "stream": stream, "temperature": float(temperature),
                "max_completion_tokens": int(max_new_tokens), "max_tokens": int(max_new_tokens)}
        if model:
            body["model"] = model
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _stats(self, t0: float, ttft: float | None, pieces: int, messages, usage: dict | None,
               finish: str | None) -> dict:
        dt = time.perf_counter() - t0
        usage = usage or {}
        new = int(usage.get("completion_tokens") or pieces)
        decode = dt - (ttft or 0.0)
        return {"ttft_s": ttft if ttft is not None else dt, "total_s": dt, "new_tokens": new,
                "tokens_per_s": new / decode if decode > 0 and ttft is not None else 0.0,
                "prompt_tokens": int(usage.get("prompt_tokens") or approx_tokens(json.dumps(messages))),
                "reused_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                "usage_from_server": bool(usage), "finish_reason": finish}

    # ---- the two calls ------------------------------------------------------------------------------
    def stream(self, messages, max_new_tokens=128, temperature=0.0, stop: str | list[str] | None = None):
        import httpx

        body = self._body(messages, max_new_tokens, temperature, True, stop)
        cut = StopCutter(body.get("stop"))
        t0 = time.perf_counter()
        ttft, n, usage, finish = None, 0, None, None
        with closing(self._send("POST", "chat/completions", body, stream=True)) as resp:
            try:
                for data in sse_data(resp.iter_lines()):
                    if data.strip() == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as err:
                        raise BackendError(f"{self.base_url} sent a malformed event: {data[:200]!r}") from err
                    if "error" in chunk:
                        raise BackendError(f"the LLM server at {self.base_url} failed: {_error_message(chunk)}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        piece = cut.feed((choice.get("delta") or {}).get("content") or "")
                        if piece:
                            if ttft is None:
                                ttft = time.perf_counter() - t0
                            n += 1
                            yield piece
                    if cut.done:
                        finish = "stop"
                        break
            except httpx.TimeoutException as err:
                raise BackendError(f"the LLM server at {self.base_url} went silent for {self.timeout_s:.0f} s "
                                   f"after {n} pieces (timeout)") from err
            except httpx.HTTPError as err:
                raise BackendError(f"the connection to the LLM server at {self.base_url} broke after {n} pieces: "
                                   f"{err or type(err).__name__}") from err
            finally:
                self.last_stats = self._stats(t0, ttft, n, messages, usage, finish)
        tail = cut.flush()
        if tail:
            if ttft is None:
                ttft = time.perf_counter() - t0
            yield tail
            self.last_stats = self._stats(t0, ttft, n + 1, messages, usage, finish)

    def complete(self, messages, max_new_tokens=128, temperature=0.0, stop: str | list[str] | None = None) -> str:
        """The non-streaming call (``"stream": false``); :attr:`last_stats` gets the server's usage."""
        import httpx

        body = self._body(messages, max_new_tokens, temperature, False, stop)
        t0 = time.perf_counter()
        with closing(self._send("POST", "chat/completions", body)) as resp:
            try:
                data = resp.json()
            except (ValueError, httpx.HTTPError) as err:
                raise BackendError(f"{self.base_url} sent an unreadable answer: {err}") from err
        if "error" in data or not data.get("choices"):
            raise BackendError(f"the LLM server at {self.base_url} failed: {_error_message(data)}")
        choice = data["choices"][0]
        cut = StopCutter(body.get("stop"))
        text = cut.feed((choice.get("message") or {}).get("content") or "") + cut.flush()
        self.last_stats = self._stats(t0, None, 1, messages, data.get("usage"),
                                      "stop" if cut.done else choice.get("finish_reason"))
        return text
