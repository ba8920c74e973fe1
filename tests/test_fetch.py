"""`museumtok data fetch` against a loopback HTTP server serving ../shared/data (with Range support)."""
import functools
import http.server
import threading
from pathlib import Path

import pytest

from museumtok import paths
from museumtok.cli import main as cli_main
from museumtok.data.catalog import load_catalog
from museumtok.data.fetch import download_one, fetch


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honours `Range: bytes=N-`, and can be told to fail or cut connections."""

    fail_first: dict = {}
    cut_after: int | None = None
    requests: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        type(self).requests.append((self.path, self.headers.get("Range")))
        left = self.fail_first.get(self.path, 0)
        if left:
            self.fail_first[self.path] = left - 1
            self.send_error(503, "try later")
            return
        p = Path(self.translate_path(self.path))
        if not p.is_file():
            self.send_error(404, "not found")
            return
        data = p.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if self.cut_after is not None and not rng:
            body = body[: self.cut_after]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(data_available):
    root = load_catalog(collection="kodak")[0].find().parents[1]  # the data folder the tests read
    RangeHandler.fail_first = {}
    RangeHandler.cut_after = None
    RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def empty_roots(monkeypatch, tmp_path):
    dest = tmp_path / "images"
    monkeypatch.setattr(paths, "image_roots", lambda: [dest])
    return dest


def test_fetch_downloads_and_verifies(server, empty_roots):
    entries = load_catalog(collection="kodak")[:3] + load_catalog(collection="artworks")[:2]
    rep = fetch(entries, empty_roots, mirror=server, backoff=0, show_progress=False)
    assert rep.ok and len(rep.downloaded) == 5
    for e in entries:
        assert (empty_roots / e.collection / e.file).stat().st_size == e.bytes
    again = fetch(entries, empty_roots, mirror=server, backoff=0, show_progress=False)
    assert len(again.present) == 5 and not again.downloaded


def test_fetch_retries_then_succeeds(server, empty_roots):
    e = load_catalog(collection="kodak")[0]
    RangeHandler.fail_first = {f"/kodak/{e.file}": 2}
    p = download_one(e, empty_roots, server, retries=3, backoff=0)
    assert p.is_file() and len(RangeHandler.requests) == 3


def test_fetch_resumes_a_cut_download(server, empty_roots):
    e = load_catalog(collection="kodak")[1]
    RangeHandler.cut_after = 1000  # the first full request delivers 1000 bytes, then the body ends short
    p = download_one(e, empty_roots, server, retries=3, backoff=0)
    assert p.is_file()
    assert any(r == "bytes=1000-" for _, r in RangeHandler.requests), RangeHandler.requests


def test_fetch_reports_missing_file_and_bad_checksum(server, empty_roots):
    from dataclasses import replace

    e = load_catalog(collection="kodak")[2]
    bad_name = replace(e, file="nope.png")
    bad_sum = replace(e, sha256="0" * 64)
    rep = fetch([bad_name, bad_sum], empty_roots, mirror=server, retries=1, backoff=0, show_progress=False)
    assert "HTTP 404" in rep.failed[e.id] or "checksum" in rep.failed[e.id]
    assert not (empty_roots / "kodak" / e.file).exists(), "a file with a wrong checksum is never kept"


def test_fetch_unreachable_server_is_a_clear_error(empty_roots):
    e = load_catalog(collection="kodak")[0]
    rep = fetch([e], empty_roots, mirror="http://127.0.0.1:9", retries=1, backoff=0, timeout=2, show_progress=False)
    assert "cannot reach" in rep.failed[e.id]


def test_cli_fetch(server, empty_roots, capsys):
    rc = cli_main(["data", "fetch", "--mirror", server, "--dest", str(empty_roots), "--collection", "kodak"])
    assert rc == 0
    assert "24 downloaded" in capsys.readouterr().out
