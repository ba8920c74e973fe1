"""tests/conftest.py's markers (notebook, server, llm) and its end-of-run "what did not run" section.

Runs a throwaway test folder whose conftest borrows the two hooks, in a pytest subprocess (a few seconds).
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("museumtok_tests_conftest", {str(ROOT / "tests" / "conftest.py")!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
pytest_collection_modifyitems = mod.pytest_collection_modifyitems
pytest_terminal_summary = mod.pytest_terminal_summary
"""

TESTS = '''
import pytest

def test_plain():
    pass

@pytest.mark.browser
def test_in_a_browser():
    pytest.skip("no chromium here")

@pytest.mark.slow
def test_long():
    pass

def test_talks_to_the_real_model():
    if False:
        TransformersBackend.embedded()

@pytest.fixture
def app_server():
    return "http://127.0.0.1:1/"

def test_against_the_app(app_server):
    pass
'''

INI = """[pytest]
addopts = -ra
markers =
    slow: x
    browser: x
    notebook: x
    server: x
    llm: x
"""


def _run(tmp_path, *args):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    (tmp_path / "test_notebooks.py").write_text("def test_a_notebook():\n    pass\n")
    (tmp_path / "pytest.ini").write_text(INI)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CI", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout


def test_markers_are_added_and_what_did_not_run_comes_last(tmp_path):
    rc, out = _run(tmp_path, "-m", "not slow and not notebook and not server and not llm")
    assert rc == 0, out
    assert "1 passed, 1 skipped, 4 deselected" in out
    section = out[out.index("what did not run"):]
    assert "short test summary info" not in section                    # printed after -ra's list
    assert "1 skipped: no chromium here" in section
    assert "4 deselected by -m 'not slow and not notebook and not server and not llm'" in section
    for kind in ("1 notebook", "1 server", "1 llm", "1 slow"):
        assert kind in section, kind
    assert "The browser tests did NOT run" in section and "apt-get install chromium" in section


def test_k_deselection_and_a_clean_run(tmp_path):
    rc, out = _run(tmp_path, "-k", "plain")
    assert rc == 0 and "1 passed" in out
    assert "deselected by -k 'plain'" in out
    rc, out = _run(tmp_path, "test_sample.py::test_plain")
    assert rc == 0 and "what did not run" not in out
