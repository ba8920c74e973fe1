"""Shared fixtures. Tests read images from ../shared/data (or data/images, or $MUSEUMTOK_DATA)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a worktree's own copy wins over the editable install
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MUSEUMTOK_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from museumtok.data.catalog import DataNotFound, load_catalog  # noqa: E402


def _data_present() -> bool:
    try:
        load_catalog(collection="kodak")[0].find()
        load_catalog(collection="artworks")[0].find()
        return True
    except DataNotFound:
        return False


@pytest.fixture(scope="session")
def data_available():
    if not _data_present():
        msg = "catalog images not found: run `museumtok data fetch` or set MUSEUMTOK_DATA"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return True


@pytest.fixture(scope="session")
def artwork_path(data_available) -> Path:
    return load_catalog(split="test", collection="artworks")[0].find()


@pytest.fixture(scope="session")
def kodak_path(data_available) -> Path:
    return load_catalog(collection="kodak")[0].find()


@pytest.fixture
def rng():
    import torch

    return torch.Generator().manual_seed(0)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(data_available, tmp_path_factory):
    """The real app (``python app.py``) on a free loopback port; yields its URL."""
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT,
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app exited early:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"app did not start in 180 s:\n{log.read_text()[-3000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
