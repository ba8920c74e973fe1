"""A minimal OpenAI-compatible server in front of any :class:`~museumtok.llm.backend.ChatBackend`.

    python -m museumtok.llm.serve --llm embedded --port 8000     # then MUSEUMTOK_LLM=http://127.0.0.1:8000/v1

Implements ``GET /v1/models`` and ``POST /v1/chat/completions`` with ``"stream": true`` (server-sent
events: ``data: {chunk}`` lines, then ``data: [DONE]``) and ``false``, the subset that vLLM, llama.cpp's
server and TGI share. It exists so the HTTP backend is tested end to end on loopback, with the
embedded model or a fake; it binds 127.0.0.1 by default and is not meant to face the internet.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .backend import BackendError, ChatBackend, make_backend


def _chunk(cid: str, model: str, delta: dict, finish: str | None = None) -> bytes:
    obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(obj)}\n\n".encode()


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
                return self._json(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = req["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    raise ValueError("messages must be a list of {role, content} objects")
            except (ValueError, KeyError) as err:
                return self._json(400, {"error": {"message": f"bad request: {err}"}})
            kw = {"max_new_tokens": int(req.get("max_tokens") or 128),
                  "temperature": float(req.get("temperature") or 0.0)}
            cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            if not req.get("stream"):
                try:
                    text = backend.generate(messages, **kw)
                except BackendError as err:
                    return self._json(400, {"error": {"message": str(err)}})
                return self._json(200, {"id": cid, "object": "chat.completion", "created": int(time.time()),
                                        "model": model_name, "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self.wfile.write(_chunk(cid, model_name, {"role": "assistant", "content": ""}))
                for piece in backend.stream(messages, **kw):
                    self.wfile.write(_chunk(cid, model_name, {"content": piece}))
                    self.wfile.flush()
                self.wfile.write(_chunk(cid, model_name, {}, "stop"))
            except BackendError as err:
                self.wfile.write(f"data: {json.dumps({'error': {'message': str(err)}})}\n\n".encode())
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


def main(argv=None):
    p = argparse.ArgumentParser(description="OpenAI-compatible server for a museumtok LLM backend")
    p.add_argument("--llm", default=None, help="backend spec (embedded, echo, hf:<id>); default $MUSEUMTOK_LLM or embedded")
    p.add_argument("--host", default="127.0.0.1")
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
