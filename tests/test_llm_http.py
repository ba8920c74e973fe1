"""The OpenAI-compatible HTTP path (§8, issue 20): our client against fakes of every failure, against our
loopback fixture (the API's defaults), and against a real server that is not ours (``transformers serve``
on the embedded SmolLM2: the one test here that loads the real model; it runs in `make test`/CI, offline).

The fakes are ``httpx.MockTransport`` handlers: each answers as one kind of server does (vLLM, FastAPI,
a proxy that rate-limits, a server that ignores ``stop``), so retries, errors and fallbacks run in
milliseconds without a socket.
"""
from __future__ import annotations

import json
import os

import httpx
import pytest
import torch

from museumtok.llm.audit import AuditLog, prompt_hash, read_log
from museumtok.llm.backends import (BackendError, EchoBackend, HTTPBackend, StopCutter, api_key_from_env,
                                   make_backend, sse_data)
from museumtok.llm.chat import ChatSession
from museumtok.llm.serve import LoopbackServer

MSGS = [{"role": "system", "content": "guide <image><v1><v2></image>"}, {"role": "user", "content": "who painted this ?"}]


def sse(*chunks, done=True) -> bytes:
    out = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(text=None, finish=None, usage=None) -> dict:
    c = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text} if text else {},
                                                         "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return c


class Server:
    """A MockTransport handler that records every request and answers from a list of responses."""

    def __init__(self, *responses, models=("served-model",)):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.models = models

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            if self.models is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})
        r = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(r, Exception):
            raise r
        return r

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("/chat/completions")]

    def backend(self, **kw) -> HTTPBackend:
        kw.setdefault("backoff_s", 0.001)
        return HTTPBackend("http://gpu-box:8000/v1", transport=httpx.MockTransport(self), **kw)


def ok_stream(*pieces, usage=None) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=sse(*[delta(p) for p in pieces], delta(finish="stop"),
                                      *([{"choices": [], "usage": usage}] if usage else [])))


# ---- the client against fakes ------------------------------------------------------------------------------------
def test_model_discovery_when_the_spec_names_none():
    srv = Server(ok_stream("Hi", "!"), models=("Qwen/Qwen2.5-7B-Instruct", "lora-a"))
    b = srv.backend()
    assert "".join(b.stream(MSGS)) == "Hi!"
    assert srv.bodies()[0]["model"] == "Qwen/Qwen2.5-7B-Instruct"            # the first listed, never "default"
    assert b.name == "Qwen/Qwen2.5-7B-Instruct@http://gpu-box:8000/v1"
    list(b.stream(MSGS))
    assert sum(r.url.path.endswith("/models") for r in srv.requests) == 1    # asked once
    # a server without /v1/models (some proxies): the request names no model, the server picks its own
    srv = Server(ok_stream("Hi"), models=None)
    b = srv.backend()
    assert "".join(b.stream(MSGS)) == "Hi" and "model" not in srv.bodies()[0] and b.model is None
    # the spec's model wins and nothing is asked
    srv = Server(ok_stream("Hi"))
    assert make_backend("http://gpu-box:8000/v1#smol").model == "smol"
    b = srv.backend(model="smol")
    list(b.stream(MSGS))
    assert srv.bodies()[0]["model"] == "smol" and not any(r.url.path.endswith("/models") for r in srv.requests)


def test_request_fields_usage_and_stats():
    usage = {"prompt_tokens": 417, "completion_tokens": 3, "total_tokens": 420,
             "prompt_tokens_details": {"cached_tokens": 400}}
    srv = Server(ok_stream("A", " blue", " vase", usage=usage))
    b = srv.backend(model="m")
    assert "".join(b.stream(MSGS, max_new_tokens=7, temperature=0.0)) == "A blue vase"
    body = srv.bodies()[0]
    assert body["max_completion_tokens"] == body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True} and "stop" not in body
    st = b.last_stats
    assert (st["prompt_tokens"], st["new_tokens"], st["reused_tokens"]) == (417, 3, 400)   # the server's numbers
    assert st["usage_from_server"] and st["finish_reason"] == "stop" and 0 <= st["ttft_s"] <= st["total_s"]


def test_retries_with_backoff_then_the_servers_error_text():
    # a refused connection and a 503 (vLLM still loading, a proxy), then the answer
    srv = Server(httpx.ConnectError("connection refused"), httpx.Response(503, json={"error": {"message": "loading"}}),
                 ok_stream("ok"))
    b = srv.backend(model="m", max_retries=2)
    assert "".join(b.stream(MSGS)) == "ok" and len(srv.bodies()) == 3
    # Retry-After is obeyed (0.05 s here), then the budget of retries runs out: the server's words, no traceback
    srv = Server(httpx.Response(429, headers={"retry-after": "0.05"}, json={"error": {"message": "rate limit: 3 req/min"}}))
    b = srv.backend(model="m", max_retries=1)
    with pytest.raises(BackendError, match=r"HTTP 429: rate limit: 3 req/min"):
        list(b.stream(MSGS))
    assert len(srv.bodies()) == 2
    # a 400 is not retried; FastAPI's {"detail": ...} (transformers serve) and a plain-text body are read too
    for resp, text in ((httpx.Response(400, json={"detail": "Server is pinned to 'x'; requested 'y'."}),
                        "HTTP 400: Server is pinned to 'x'; requested 'y'."),
                       (httpx.Response(502, text="Bad Gateway from nginx"), "HTTP 502: Bad Gateway from nginx"),
                       (httpx.Response(422, json={"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
                        "HTTP 422: body.messages: field required")):
        srv = Server(resp)
        with pytest.raises(BackendError) as e:
            srv.backend(model="m", max_retries=1).complete(MSGS)
        assert str(e.value).endswith(text)
        assert len(srv.bodies()) == (2 if resp.status_code == 502 else 1)


def test_a_refused_optional_field_is_dropped_and_the_call_repeated():
    refusal = httpx.Response(400, json={"error": {"message": "Unsupported parameter: 'max_tokens' is not supported "
                                                             "with this model. Use 'max_completion_tokens' instead."}})
    srv = Server(refusal, httpx.Response(200, json={"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}))
    b = srv.backend(model="o4-mini")
    assert b.complete(MSGS, max_new_tokens=5) == "fine"
    first, second = srv.bodies()
    assert first["max_tokens"] == 5 and "max_tokens" not in second and second["max_completion_tokens"] == 5
    b.complete(MSGS)
    assert "max_tokens" not in srv.bodies()[-1]                                # remembered for this server


def test_timeouts_become_messages_and_the_chat_shows_them(tmp_path):
    class Stall(httpx.SyncByteStream):           # two pieces, then the server goes silent
        def __iter__(self):
            yield sse(delta("A"), delta(" blue"), done=False)
            raise httpx.ReadTimeout("timed out")

    srv = Server(httpx.Response(200, stream=Stall()))
    b = srv.backend(model="m", timeout_s=7)
    got = []
    with pytest.raises(BackendError, match="went silent for 7 s after 2 pieces"):
        for p in b.stream(MSGS):
            got.append(p)
    assert got == ["A", " blue"]
    srv = Server(httpx.ReadTimeout("timed out"))
    with pytest.raises(BackendError, match="sent nothing for 7 s"):
        srv.backend(model="m", timeout_s=7).complete(MSGS)
    # in the chat: the partial answer, then the server's reason; the audit log says the turn was cut off
    srv = Server(httpx.Response(400, json={"detail": "Server is pinned to 'smol'; requested 'big'."}))
    log = AuditLog(tmp_path / "chat.jsonl")
    s = ChatSession(srv.backend(model="big"), audit=log, guard=False, check=False)
    out = list(s.ask("What colours dominate?"))
    assert out[-1].startswith("⚠ The language model failed") and "Server is pinned to 'smol'" in out[-1]
    assert "Traceback" not in out[-1]
    turn = [r for r in read_log(log.path) if r["type"] == "turn"][-1]
    assert turn["completed"] is False and "pinned" in turn["error"]


def test_stop_strings_are_sent_and_applied_to_what_comes_back():
    srv = Server(ok_stream("Hel", "lo. ST", "OP here"))             # a server that ignores `stop`
    b = srv.backend(model="m")
    assert "".join(b.stream(MSGS, stop="STOP")) == "Hello. "
    assert srv.bodies()[0]["stop"] == ["STOP"] and b.last_stats["finish_reason"] == "stop"
    srv = Server(httpx.Response(200, json={"choices": [{"message": {"content": "one\n\ntwo"}, "finish_reason": "stop"}]}))
    assert srv.backend(model="m", stop=["\n\n"]).complete(MSGS) == "one"
    # the cutter holds back only what may still become a stop string
    c = StopCutter(["END", "##"])
    assert [c.feed(p) for p in ("ab", "E", "N", "x#", "#y")] == ["ab", "", "", "ENx", ""] and c.done
    c = StopCutter(["END"])
    assert c.feed("abE") == "ab" and c.flush() == "E"


def test_sse_parsing_follows_the_spec():
    lines = [": keep-alive", "data: {\"a\":", "data: 1}", "", "event: ping", "", "data:[DONE]", ""]
    assert list(sse_data(iter(lines))) == ['{"a":\n1}', "[DONE]"]


def test_api_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("MUSEUMTOK_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert api_key_from_env("http://gpu-box:8000/v1") is None                  # an OpenAI secret stays with OpenAI
    assert api_key_from_env("https://api.openai.com/v1") == "sk-openai"
    monkeypatch.setenv("MUSEUMTOK_LLM_API_KEY", "token-abc123")
    srv = Server(ok_stream("ok"))
    list(srv.backend(model="m").stream(MSGS))
    assert all(r.headers["authorization"] == "Bearer token-abc123" for r in srv.requests)
    monkeypatch.delenv("MUSEUMTOK_LLM_API_KEY")
    srv = Server(ok_stream("ok"))
    list(srv.backend(model="m").stream(MSGS))
    assert "authorization" not in srv.requests[0].headers


# ---- our loopback fixture follows the API's defaults -------------------------------------------------------------
class Recording(EchoBackend):
    def __init__(self):
        super().__init__()
        self.calls = []

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        self.calls.append({"max_new_tokens": max_new_tokens, "temperature": temperature})
        return super().stream(messages, max_new_tokens, temperature)


def test_loopback_server_follows_the_api_defaults():
    fake = Recording()
    with LoopbackServer(fake, model_name="echo") as srv:
        post = lambda body: httpx.post(f"{srv.url}/chat/completions", json=body, timeout=10)  # noqa: E731
        r = post({"messages": MSGS})
        assert r.status_code == 200 and fake.calls[-1]["temperature"] == 1.0               # absent: 1, not 0
        assert r.json()["usage"]["completion_tokens"] == len(r.json()["choices"][0]["message"]["content"].split())
        post({"messages": MSGS, "max_tokens": 9, "max_completion_tokens": 3, "temperature": 0})
        assert fake.calls[-1] == {"max_new_tokens": 3, "temperature": 0.0}                # the newer field wins
        r = post({"messages": MSGS, "max_completion_tokens": 4})
        assert r.json()["choices"][0]["finish_reason"] == "length"
        r = post({"messages": MSGS, "model": "default"})
        assert r.status_code == 404 and "`default` does not exist" in r.json()["error"]["message"]
        assert post({"messages": MSGS, "temperature": 3}).status_code == 400
        # our client: discovery, stop strings, usage in the stream's last chunk
        b = HTTPBackend(srv.url, max_retries=0)
        assert b.resolve_model() == "echo"
        full = b.generate(MSGS, max_new_tokens=50)
        assert "".join(b.stream(MSGS, max_new_tokens=50, stop=" image")) == full[:full.index(" image")]
        assert b.last_stats["usage_from_server"]
        assert b.complete(MSGS, max_new_tokens=50, stop=[" tokens."]) == full[:full.index(" tokens.")]


def test_cli_llm_serve_has_host():
    from museumtok.cli import build_parser

    a = build_parser().parse_args(["llm", "serve", "--host", "0.0.0.0", "--port", "8123", "--llm", "echo"])
    assert (a.host, a.port, a.llm) == ("0.0.0.0", 8123, "echo")


# ---- a real server: transformers serve on the embedded SmolLM2 ---------------------------------------------------
def _serve_wanted() -> str | None:
    """Why the real-server test cannot run here (None: it can). In CI a missing piece is a failure."""
    from transformers.utils.import_utils import is_serve_available

    from museumtok.llm.backends import embedded_is_cached

    if not is_serve_available():
        return "transformers serve needs `pip install 'transformers[serving]'` (the dev extras)"
    if not (os.environ.get("CI") == "true" or embedded_is_cached()):
        return "SmolLM2 cache absent (runs in CI, or after `museumtok llm convert`)"
    return None


def _check_token_limit_and_stop_strings(backend) -> list[dict]:
    """The token limit and stop strings reach a real server's model (a short text prompt: quick); returns it."""
    q = [{"role": "user", "content": "What is the capital of France?"}]
    full = "".join(backend.stream(q, max_new_tokens=12))
    short = "".join(backend.stream(q, max_new_tokens=3))
    assert backend.last_stats["finish_reason"] == "length"
    if backend.last_stats["usage_from_server"]:
        assert backend.last_stats["new_tokens"] == 3
    else:                  # a stream without a usage chunk (llama-cpp-python): the non-streamed call's own count
        assert backend.complete(q, max_new_tokens=3) == short and backend.last_stats["new_tokens"] == 3
        assert backend.last_stats["usage_from_server"]
    assert full.startswith(short) and len(short) < len(full)
    w = " " + full.split()[2]
    assert backend.complete(q, max_new_tokens=12, stop=[w]) == full[:full.index(w)]
    return q


@pytest.mark.llm
@pytest.mark.server
def test_transformers_serve_chat_turn_with_image_tokens(tmp_path, rng):
    """`transformers serve` (not our code) serves the converted SmolLM2 cache; a chat turn with 16 image tokens
    goes through our client, streamed and not; the answer, the server's usage numbers and the audit log agree.
    About 40 s on 2 busy CPU cores (the server starts in ~15 s; it has no prefix cache, so every call
    prefills its whole prompt)."""
    reason = _serve_wanted()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    import openai
    from transformers import AutoTokenizer

    from museumtok import registry
    from museumtok.llm.backends import convert_embedded
    from museumtok.llm.serve import ExternalServer

    folder = convert_embedded()                      # also gives an older cache its `architectures`
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    tok = registry.load("anym-k1000")                # any M: 16 tokens keep the prompt (and the test) short
    x = torch.rand(3, 64, 64, generator=rng)
    n = 16                                           # answer tokens
    with ExternalServer.transformers(folder, threads=1, log=tmp_path / "serve.log", startup_timeout_s=90) as srv:
        backend = make_backend(srv.url)              # no #model: asked from /v1/models
        assert backend.model == str(folder)
        log = AuditLog(tmp_path / "audit.jsonl")
        # guard off: this test sends the image tokens themselves (as text: the server's BPE splits them)
        s = ChatSession(backend, audit=log, max_new_tokens=n, reserve_answer=n, guard=False, check=False)
        s.set_image(tok, x, M=16, image_id="random")
        answer = list(s.ask("Describe this painting in one sentence."))[-1]
        rec, st = s.last, s.last.stats
        assert rec.error is None and answer.strip() and not answer.startswith("⚠")
        image_text = next(m["content"] for m in rec.messages if "<image>" in m["content"])
        assert image_text.count("<anym-k1000:v") == 16
        # usage: the server's own count, equal to the chat template tokenized here
        hf = AutoTokenizer.from_pretrained(folder)
        prompt = hf(hf.apply_chat_template(rec.messages, add_generation_prompt=True, tokenize=False),
                    add_special_tokens=False)["input_ids"]
        assert st["usage_from_server"] and st["prompt_tokens"] == len(prompt) > 16 * 5
        assert 1 <= st["new_tokens"] <= n
        assert abs(st["new_tokens"] - len(hf(answer, add_special_tokens=False)["input_ids"])) <= 1   # + end token
        assert 0 < st["ttft_s"] <= st["total_s"]
        # not streamed: the same greedy answer, read the same way by the official openai client
        assert backend.complete(rec.messages, max_new_tokens=n) == answer
        ref = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0).chat.completions.create(
            model=backend.model, messages=rec.messages, max_completion_tokens=n, temperature=0)
        assert ref.choices[0].message.content == answer and ref.usage.prompt_tokens == st["prompt_tokens"]
        q = _check_token_limit_and_stop_strings(backend)
        # the server's refusal reaches the caller in its own words
        with pytest.raises(BackendError, match=r"HTTP 400: Server is pinned to .*requested 'default'"):
            HTTPBackend(srv.url, model="default", max_retries=0).complete(q)
    assert srv.proc.poll() is not None                                          # stopped
    recs = list(read_log(log.path))
    assert sum(r["type"] == "image_token" for r in recs) == 16
    q_rec, turn = [r for r in recs if r["type"] in ("question", "turn")]
    assert q_rec["question"] == turn["question"] == "Describe this painting in one sentence."
    assert turn["answer"] == answer and turn["completed"] is True and turn["backend"] == backend.name
    assert turn["prompt_hash"] == prompt_hash(rec.messages) and turn["M"] == 16


# ---- a second real server: llama.cpp (llama-cpp-python's server) on the GGUF file itself --------------------------
@pytest.mark.llamacpp
@pytest.mark.server
def test_llama_cpp_server_chat_turn_with_image_tokens(tmp_path, rng):
    """llama.cpp serves the embedded GGUF as shipped (its own tokenizer, its own copy of the chat template, Q4_1
    kernels): a chat turn with 16 image tokens through our client, streamed and not; usage, ``max_tokens``, stop
    strings and the audit log agree. Optional: llama-cpp-python[server] is built from source (~15 CPU-min), so
    the test is skipped, with the reason, where it is absent (also in CI)."""
    from museumtok.llm.backends import BackendError as _BE
    from museumtok.llm.backends.embedded import embedded_gguf
    from museumtok.llm.serve import ExternalServer, llama_cpp_python

    if llama_cpp_python() is None:
        pytest.skip("llama-cpp-python[server] absent (README 'llama.cpp server' builds it; "
                    "or set MUSEUMTOK_LLAMA_CPP_PYTHON)")
    try:
        gguf = embedded_gguf()
    except _BE as e:
        pytest.skip(str(e))
    import openai

    from museumtok import registry

    tok = registry.load("anym-k1000")
    x = torch.rand(3, 64, 64, generator=rng)
    n = 16
    with ExternalServer.llama_cpp(gguf, threads=1, alias="smollm2-q4_1", log=tmp_path / "llama.log",
                                  startup_timeout_s=120) as srv:
        backend = make_backend(srv.url)              # no #model: asked from /v1/models
        assert backend.model == "smollm2-q4_1"
        log = AuditLog(tmp_path / "audit.jsonl")
        s = ChatSession(backend, audit=log, max_new_tokens=n, reserve_answer=n, guard=False, check=False)
        s.set_image(tok, x, M=16, image_id="random")
        answer = list(s.ask("Describe this painting in one sentence."))[-1]
        rec, st = s.last, s.last.stats
        assert rec.error is None and answer.strip() and not answer.startswith("⚠"), srv.tail()
        assert next(m["content"] for m in rec.messages if "<image>" in m["content"]).count("<anym-k1000:v") == 16
        # llama-cpp-python's stream ignores stream_options.include_usage: the stats say they are estimates
        assert not st["usage_from_server"] and st["prompt_tokens"] > 0
        assert 1 <= st["new_tokens"] <= n and 0 < st["ttft_s"] <= st["total_s"]
        # not streamed: the same greedy answer with the server's usage, and the official openai client reads the same
        assert backend.complete(rec.messages, max_new_tokens=n) == answer
        used = backend.last_stats
        assert used["usage_from_server"] and used["prompt_tokens"] > 16 * 5   # each image token is several BPE pieces
        ref = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0).chat.completions.create(
            model=backend.model, messages=rec.messages, max_tokens=n, temperature=0)
        assert ref.choices[0].message.content == answer and ref.usage.prompt_tokens == used["prompt_tokens"]
        _check_token_limit_and_stop_strings(backend)
    assert srv.proc.poll() is not None
    turn = [r for r in read_log(log.path) if r["type"] == "turn"][-1]
    assert turn["answer"] == answer and turn["completed"] is True and turn["prompt_hash"] == prompt_hash(rec.messages)
