"""Shared fixtures and markers. Tests read images from $MUSEUMTOK_DATA, data/images or ../shared/data.

Markers (pyproject.toml): ``slow`` and ``browser`` are set in the test files; ``notebook`` (every test
of test_notebooks.py), ``server`` (tests that start app.py in a subprocess) and ``llm`` (tests that
load the real embedded SmolLM2) are added here at collection, so ``make test-fast`` can leave them out.
At the end of a run, a short section lists what was skipped or deselected and why.
"""
from __future__ import annotations

import inspect
import os
import sys
from collections import Counter
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
        from museumtok.paths import no_images_hint

        msg = no_images_hint()
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


# ---- markers added at collection, and the end-of-run summary of what did not run --------------------------------
SERVER_FIXTURES = {"app_server", "echo_app"}          # each starts app.py in a subprocess (10-20 s)
LLM_CALLS = ("TransformersBackend.embedded(", "embedded_is_cached(")   # the real SmolLM2 (~270 MB)


def _loads_the_llm(item) -> bool:
    fn = getattr(item, "function", None)
    try:
        src = inspect.getsource(fn) if fn is not None else ""
    except (OSError, TypeError):
        return False
    return any(call in src for call in LLM_CALLS)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name == "test_notebooks.py":
            item.add_marker(pytest.mark.notebook)
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)
        if _loads_the_llm(item):
            item.add_marker(pytest.mark.llm)


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return reason.removeprefix("Skipped: ").strip()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)       # the outermost wrapper: printed after -ra's list
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """What did not run and why, grouped, after pytest's own summary (easy to miss among -ra's lines)."""
    yield
    tr = terminalreporter
    skipped = tr.stats.get("skipped", [])
    deselected = tr.stats.get("deselected", [])
    if not skipped and not deselected:
        return
    tr.section("what did not run", sep="=", yellow=True, bold=True)
    for reason, n in Counter(_skip_reason(r) for r in skipped).most_common():
        tr.write_line(f"{n:4d} skipped: {reason}")
    if deselected:
        order = ("notebook", "browser", "server", "llm", "slow")      # each test counted under its first marker
        marks = Counter(next((m for m in order if it.get_closest_marker(m)), "other") for it in deselected)
        kinds = ", ".join(f"{n} {m}" for m, n in marks.most_common())
        how = " ".join(f"{opt} '{v}'" for opt, v in (("-m", config.getoption("markexpr")),
                                                       ("-k", config.getoption("keyword"))) if v)
        tr.write_line(f"{len(deselected):4d} deselected by {how or 'a plugin'}"
                      + (f" ({kinds})" if kinds else "") + ": `make test` runs them")
    if any("browser" in getattr(r, "keywords", {}) for r in skipped):
        tr.write_line("The browser tests did NOT run: install Chromium (Debian: `sudo apt-get install chromium`, "
                      "as .ci/run does), then run `make test` again.", red=True, bold=True)
