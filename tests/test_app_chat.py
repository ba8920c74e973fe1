"""The Chat tab's pure callbacks, on a fake backend (the real LLM is exercised in test_llm.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from museumtok.app import chat as ch
from museumtok.llm.backends import EchoBackend


@pytest.fixture
def echo_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))
    ch.BACKEND.set(EchoBackend(context_window=8192), spec="echo")
    yield
    ch.BACKEND.set(None, spec=None)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "art.png"
    Image.fromarray(rng.integers(0, 255, (96, 120, 3), dtype=np.uint8)).save(p)
    return str(p)


def test_chat_flow_streams_budget_audit(echo_backend, image_file):
    v = ch.load_image_for_chat(image_file, "lloyd-patch-k256", 64)
    assert v.sid and "<image>" in v.sees and "New image" in v.notice and v.grid is not None
    views = list(ch.chat_turn("What colours dominate?", v.history, v.sid, context=2048))
    assert len(views) > 2                                             # streamed
    last = views[-1]
    assert last.history[-2]["role"] == "user" and last.history[-1]["content"].startswith("I see 64 image tokens")
    assert "time to first token" in last.notice and last.budget is not None
    assert last.sees.count("lloyd-patch-k256:v") == 64                 # what the LLM saw, verbatim
    recs = [json.loads(x) for x in open(ch.audit_file(v.sid))]
    assert sum(r["type"] == "image_token" for r in recs) == 64 and recs[-1]["type"] == "turn"
    # a new image flushes the conversation
    v2 = ch.load_image_for_chat(image_file, "lloyd-patch-k256", 256, sid=v.sid)
    assert v2.sid == v.sid and v2.history == []
    assert ch._SESSIONS[v.sid].history == []


def test_chat_over_long_question_gets_a_clear_message(echo_backend, image_file):
    v = ch.load_image_for_chat(image_file, "lloyd-patch-k256", 1024, context=256)
    views = list(ch.chat_turn("why " * 400, [], v.sid, context=256))
    assert "shorter question" in views[-1].history[-1]["content"]
    ok = list(ch.chat_turn("Colours?", [], v.sid, context=256))[-1]
    assert "M=64" in ok.notice                                          # M was lowered to fit, and said so


def test_chat_bad_inputs_and_failed_backend(echo_backend, image_file, monkeypatch):
    assert "Upload" in ch.load_image_for_chat(None, "lloyd-patch-k256", 64).notice
    assert "choose one of" in ch.load_image_for_chat(image_file, "lloyd-patch-k256", 7).notice
    assert "first" in list(ch.chat_turn("  ", [], None))[-1].notice
    assert ch.display_text("[CITE:<v3>]") == "[CITE:&lt;v3&gt;]"
    ch.BACKEND.set(None, spec="http://127.0.0.1:9/v1")
    out = list(ch.chat_turn("hello?", [], None))[-1]                      # unreachable server: a message, no crash
    assert "failed" in out.history[-1]["content"]
    ch.BACKEND.set(None, spec="no-such-backend")
    assert "could not be loaded" in ch.load_image_for_chat(image_file, "lloyd-patch-k256", 64).notice


def test_app_imports_without_loading_the_llm(echo_backend):
    ch.BACKEND.set(None, spec="embedded")
    import app  # noqa: F401  (builds the Blocks)

    assert not ch.BACKEND.loaded


def test_recognised_artwork_gets_its_card(echo_backend, artwork_path, tmp_path, monkeypatch):
    from museumtok.data.catalog import load_catalog
    from museumtok.llm.retrieval import CatalogIndex

    entries = load_catalog(collection="artworks")[:6]
    monkeypatch.setattr(ch, "CATALOG_INDEX", ch.LazyIndex())
    ch.CATALOG_INDEX._index = CatalogIndex.build(ch.registry.load("lloyd-patch-k1024"), 1024, entries=entries,
                                                 use_cache=False)
    img = Image.open(entries[2].find()).convert("RGB")
    w, h = img.size
    crop = tmp_path / "photo.jpg"
    img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(crop, quality=30)
    v = ch.load_image_for_chat(str(crop), "lloyd-patch-k256", 64, recognise=True)
    assert f"Recognised **{entries[2].title}**" in v.notice
    assert f"Catalog card: Title: {entries[2].title}; Artist: {entries[2].artist}" in v.sees
    # an unknown picture: no card; with a fallback configured, the session moves to it
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 90, 3), dtype=np.uint8)).save(noise)
    monkeypatch.setattr(ch, "FALLBACK", ch.LazyBackend(spec="echo"))
    v2 = ch.load_image_for_chat(str(noise), "lloyd-patch-k256", 64, sid=v.sid, recognise=True)
    assert "not in the catalog" in v2.notice and "fallback" in v2.notice and "Catalog card" not in v2.sees
    assert ch._SESSIONS[v.sid].backend is ch.FALLBACK.get()[0]


@pytest.fixture(scope="module")
def echo_app(tmp_path_factory):
    """The real app with the echo backend (``--llm echo``) on a free loopback port."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path_factory.mktemp("echo_app")
    env = dict(os.environ, PYTHONPATH=str(root), GRADIO_ANALYTICS_ENABLED="False", MUSEUMTOK_CACHE=str(d / "cache"))
    with open(d / "app.log", "w") as fh:
        proc = subprocess.Popen([sys.executable, str(root / "app.py"), "--port", str(port), "--llm", "echo"],
                                cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"app did not start:\n{(d / 'app.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_chat_endpoints_on_the_running_app(echo_app, image_file):
    from gradio_client import Client, handle_file

    c = Client(echo_app, verbose=False)
    out = c.predict(handle_file(image_file), "lloyd-patch-k256", 64, 2048, False, api_name="/chat_load")
    history, sees, notice = out[0], out[1], out[4]
    assert history == [] and "<image>" in sees and "New image: 64 tokens" in notice
    out = c.predict("Which colours?", [], 2048, api_name="/chat_ask")
    assert "I see 64 image tokens" in str(out[0][-1]["content"]) and "time to first token" in out[4]
    log = c.predict(api_name="/chat_audit")
    assert sum(1 for line in open(log) if '"image_token"' in line) == 64


@pytest.mark.server
def test_a_killed_server_loses_no_question(tmp_path, image_file):
    """kill -9 two seconds into a streamed answer: the question is already in the audit log; the next start
    of the app adds the record that its answer was cut off. A real server process, really killed."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from gradio_client import Client, handle_file

    root = Path(__file__).resolve().parents[1]
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(root), GRADIO_ANALYTICS_ENABLED="False", MUSEUMTOK_CACHE=str(cache))

    def start():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, str(root / "app.py"), "--port", str(port), "--llm", "echo:0.5"],
                                cwd=root, stdout=open(tmp_path / f"app{port}.log", "w"), stderr=subprocess.STDOUT,
                                env=env)
        url = f"http://127.0.0.1:{port}/"
        for _ in range(360):
            try:
                urllib.request.urlopen(url, timeout=2)
                return proc, url
            except OSError:
                time.sleep(0.5)
        proc.kill()
        pytest.fail("app did not start")

    proc, url = start()
    try:
        c = Client(url, verbose=False)
        job = c.submit("Who painted this painting, please?", [], 2048, handle_file(image_file), "lloyd-patch-k256", 64,
                       False, api_name="/chat_ask")
        audit = cache / "audit"
        deadline = time.time() + 60
        while time.time() < deadline and not any('"question"' in p.read_text() for p in audit.glob("*.jsonl")):
            time.sleep(0.2)
        time.sleep(2.0)                                 # two seconds into the streamed answer
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        del job
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = list(audit.glob("*.jsonl"))
    recs = [json.loads(line) for p in logs for line in p.read_text().splitlines()]
    assert [r["question"] for r in recs if r["type"] == "question"] == ["Who painted this painting, please?"]
    assert not [r for r in recs if r["type"] == "turn"]                # the answer never ended
    proc2, _ = start()                                                # the next start closes the dangling question
    try:
        recs = [json.loads(line) for p in logs for line in p.read_text().splitlines()]
        cut = [r for r in recs if r["type"] == "turn"]
        assert len(cut) == 1 and cut[0]["completed"] is False and "stopped" in cut[0]["error"]
        assert sum(r["type"] == "image_token" for r in recs) == 64      # nothing already written was lost
    finally:
        proc2.terminate()
        proc2.wait(10)


def test_a_chat_call_during_the_start_up_waits_for_the_preload():
    """A question that arrives while the guide adapters are still loading must not race the loader
    (it once answered "I can't read these tokens" for a tokenizer whose adapter was half loaded)."""
    import threading

    lazy = ch.LazyBackend(spec="echo")
    release, seen = threading.Event(), []

    def preload(backend, lz):
        release.wait(5)
        seen.append("preloaded")

    lazy.start(preload=preload)
    got = []
    caller = threading.Thread(target=lambda: got.append(lazy.get()))
    caller.start()
    caller.join(0.3)
    assert caller.is_alive() and not got            # still waiting for the preload
    release.set()
    caller.join(5)
    assert seen == ["preloaded"] and got and got[0][0] is not None and got[0][1] is None
