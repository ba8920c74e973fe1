"""OpenAI-compatible serving: a minimal server in front of any :class:`~museumtok.llm.backends.ChatBackend`
(a test fixture), and a real one (``transformers serve``) run as a subprocess.

    .venv/bin/museumtok llm serve --llm embedded --port 8000    # then MUSEUMTOK_LLM=http://127.0.0.1:8000/v1

:class:`LoopbackServer` implements ``GET /v1/models`` and ``POST /v1/chat/completions`` with ``"stream": true``
(server-sent events: ``data: {chunk}`` lines, then ``data: [DONE]``) and ``false``, with the Chat Completions
API's defaults: ``temperature`` 1 when absent, ``max_completion_tokens`` before the deprecated ``max_tokens``,
``stop`` strings (not returned), ``usage`` in the answer (and in a last chunk when ``stream_options.include_usage``),
404 for a model it does not serve, errors as ``{"error": {"message", "type", "code"}}``. It exists so the
HTTP client is tested end to end on loopback with a fake; it binds 127.0.0.1 by default and is not meant to
face the internet. :class:`ExternalServer` starts a real server (``transformers serve`` on the embedded
model's converted folder, or any command) on a free loopback port and waits until it answers, so the same
client is also tested against code that is not ours.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .backends import BackendError, ChatBackend, StopCutter, make_backend

#: ``max_completion_tokens`` when a request names none: the API's "up to the context", capped for a CPU model
DEFAULT_MAX_TOKENS = 1024


def _chunk(cid: str, model: str, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n".encode()


def _error(message: str, kind: str = "invalid_request_error", code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def request_params(req: dict, backend: ChatBackend) -> dict:
    """``stream()`` keyword arguments from a Chat Completions request, with the API's defaults; raises
    ValueError for a value the API would refuse."""
    n = req.get("max_completion_tokens")
    if n is None:
        n = req.get("max_tokens")
    if n is None:
        prompt = sum(backend.count_tokens(str(m.get("content", ""))) + 6 for m in req["messages"])
        n = max(1, min(DEFAULT_MAX_TOKENS, backend.context_window - prompt))
    t = req.get("temperature")
    t = 1.0 if t is None else float(t)                 # the API's default is 1, not 0
    if int(n) < 1 or not 0.0 <= t <= 2.0:
        raise ValueError(f"max_completion_tokens must be ≥ 1 and temperature in [0, 2] (got {n}, {t})")
    return {"max_new_tokens": int(n), "temperature": t}


def make_handler(backend: ChatBackend, model_name: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _json(self, code: int, obj: dict):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/") == "/v1/models":
                return self._json(200, {"object": "list", "data": [{"id": model_name, "object": "model",
                                                                     "created": 0, "owned_by": "museumtok"}]})
            self._json(404, _error(f"no route {self.path}", "not_found_error"))

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, _error(f"no route {self.path}", "not_found_error"))
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = req["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    raise ValueError("messages must be a list of {role, content} objects")
                kw = request_params(req, backend)
                stop = req.get("stop")
                if stop is not None and not isinstance(stop, (str, list)):
                    raise ValueError("stop must be a string or a list of strings")
            except (ValueError, KeyError, TypeError) as err:
                return self._json(400, _error(f"bad request: {err}"))
            if req.get("model") not in (None, model_name):
                return self._json(404, _error(f"The model `{req['model']}` does not exist.", "NotFoundError",
                                              "model_not_found"))
            cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            cut = StopCutter(stop)
            consumed = [0]                               # pieces taken from the backend

            def pieces():
                backend.last_stats = {}                  # a generator closed early (a stop string) may set none
                gen = backend.stream(messages, **kw)
                try:
                    for p in gen:
                        consumed[0] += 1
                        out = cut.feed(p)
                        if out:
                            yield out
                        if cut.done:
                            return
                    tail = cut.flush()
                    if tail:
                        yield tail
                finally:
                    gen.close()

            def usage_and_finish():
                st = backend.last_stats
                new = int(st.get("new_tokens", consumed[0]))
                prompt = int(st.get("prompt_tokens") or sum(backend.count_tokens(str(m.get("content", "")))
                                                            for m in messages))
                usage = {"prompt_tokens": prompt, "completion_tokens": new, "total_tokens": prompt + new}
                return usage, ("length" if new >= kw["max_new_tokens"] and not cut.done else "stop")

            if not req.get("stream"):
                try:
                    text = "".join(pieces())
                except BackendError as err:
                    return self._json(400, _error(str(err)))
                usage, finish = usage_and_finish()
                return self._json(200, {"id": cid, "object": "chat.completion", "created": int(time.time()),
                                        "model": model_name, "usage": usage, "choices": [{"index": 0,
                                        "finish_reason": finish, "message": {"role": "assistant", "content": text}}]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self.wfile.write(_chunk(cid, model_name, {"role": "assistant", "content": ""}))
                for piece in pieces():
                    self.wfile.write(_chunk(cid, model_name, {"content": piece}))
                    self.wfile.flush()
                usage, finish = usage_and_finish()
                self.wfile.write(_chunk(cid, model_name, {}, finish))
                if (req.get("stream_options") or {}).get("include_usage"):
                    self.wfile.write(_chunk(cid, model_name, None, usage=usage))
            except BackendError as err:
                self.wfile.write(f"data: {json.dumps(_error(str(err), 'server_error'))}\n\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                return                                   # the client left (a cut answer): nothing to finish
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


class LoopbackServer:
    """``with LoopbackServer(backend) as srv: HTTPBackend(srv.url)`` — serves in a daemon thread."""

    def __init__(self, backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None):
        self.model_name = model_name or backend.name
        self.httpd = ThreadingHTTPServer((host, port), make_handler(backend, self.model_name))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- a real server in a subprocess -----------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def transformers_serve_command(model: str | Path, host: str, port: int, device: str = "cpu",
                               dtype: str = "float32") -> list[str]:
    """``transformers serve MODEL`` (transformers ≥ 5, ``pip install 'transformers[serving]'``), pinned to one
    model: the console script beside this interpreter, else ``python -m transformers.cli.transformers``."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    head = [exe] if exe else [sys.executable, "-m", "transformers.cli.transformers"]
    return head + ["serve", str(model), "--host", host, "--port", str(port), "--device", device,
                   "--dtype", dtype, "--log-level", "warning"]


def llama_cpp_python() -> str | None:
    """A Python that can ``import llama_cpp.server``: ``$MUSEUMTOK_LLAMA_CPP_PYTHON``, this interpreter, or the
    separate environment that the README's llama.cpp lines build (``~/.cache/museumtok/venv-llamacpp``: its
    FastAPI/Starlette pins stay out of the app's environment). None when there is none."""
    import importlib.util

    env = os.environ.get("MUSEUMTOK_LLAMA_CPP_PYTHON")
    if env:
        return env if Path(env).is_file() else None
    if importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None:
        return sys.executable
    venv = Path.home() / ".cache" / "museumtok" / "venv-llamacpp" / "bin" / "python"
    return str(venv) if venv.is_file() else None


def llama_cpp_command(gguf: str | Path, host: str, port: int, python: str | None = None, threads: int = 1,
                      n_ctx: int = 2048, alias: str | None = None) -> list[str]:
    """``python -m llama_cpp.server`` (llama-cpp-python's OpenAI-compatible server, llama.cpp underneath)
    on one GGUF file; the chat template is the one stored in the GGUF. ``alias``: the model name it reports."""
    py = python or llama_cpp_python()
    if py is None:
        raise BackendError("llama.cpp's server needs llama-cpp-python[server] (README: 'llama.cpp server')")
    cmd = [py, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host, "--port", str(port),
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx)]
    return cmd + (["--model_alias", alias] if alias else [])


class ExternalServer:
    """An OpenAI-compatible server in a subprocess, stopped on exit; ``url`` ends with ``/v1``.

        with ExternalServer.transformers(convert_embedded()) as srv:   # ~10 s to start on 2 CPU cores
            backend = make_backend(srv.url)                             # the model from /v1/models

    Offline: ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_UPDATE_CHECK`` are set for the child. ``ready_s``: seconds
    until ``/v1/models`` answered; the child's output goes to ``log`` (a file), shown when it fails to start."""

    def __init__(self, command: list[str], url: str, env: dict | None = None, log: Path | None = None,
                 startup_timeout_s: float = 120.0):
        self.command, self.url = command, url.rstrip("/")
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix="museumtok-llm-server-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None

    @classmethod
    def transformers(cls, model: str | Path, host: str = "127.0.0.1", port: int | None = None, device: str = "cpu",
                     dtype: str = "float32", threads: int | None = None, **kw) -> "ExternalServer":
        port = port or free_port(host)
        env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
        return cls(transformers_serve_command(model, host, port, device, dtype), f"http://{host}:{port}/v1",
                   env=env, **kw)

    @classmethod
    def llama_cpp(cls, gguf: str | Path, host: str = "127.0.0.1", port: int | None = None, threads: int = 1,
                  python: str | None = None, alias: str | None = None, **kw) -> "ExternalServer":
        port = port or free_port(host)
        return cls(llama_cpp_command(gguf, host, port, python, threads, alias=alias), f"http://{host}:{port}/v1", **kw)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def start(self) -> "ExternalServer":
        t0 = time.perf_counter()
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(self.command, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        while time.perf_counter() - t0 < self.startup_timeout_s:
            if self.proc.poll() is not None:
                raise BackendError(f"{' '.join(self.command[:3])} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        self.ready_s = time.perf_counter() - t0
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise BackendError(f"{' '.join(self.command[:3])} did not answer in {self.startup_timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)    # its own session: the server and any worker it started
        except ProcessLookupError:
            return
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description="OpenAI-compatible server for a museumtok LLM backend")
    p.add_argument("--llm", default=None, help="backend spec (embedded, echo, hf:<id>); default $MUSEUMTOK_LLM or embedded")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    a = p.parse_args(argv)
    srv = LoopbackServer(make_backend(a.llm), a.host, a.port)
    print(f"serving {srv.model_name} on {srv.url}  (MUSEUMTOK_LLM={srv.url}#{srv.model_name})", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
