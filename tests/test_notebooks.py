"""Notebooks: jupytext py:percent pairs, committed without outputs, executed on small settings.

Each ``notebooks/NAME.py`` is the reviewed source; ``NAME.ipynb`` is its pair for JupyterLab. The
execution test builds the book with ``MUSEUMTOK_FAST=1`` (``museumtok.book``, what ``make book`` runs):
every .py is executed top to bottom in a kernel of this very interpreter, its widgets live (no
test-only preamble), and the static pages are checked (index, outputs, nothing from the network).
"""
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.py") if p.read_text().startswith("# ---\n# jupyter:"))


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no py:percent notebooks found in notebooks/"


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {py.relative_to(ROOT)}`"
    paired = nbformat.read(ipynb, as_version=4)
    for c in paired.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{ipynb.name} has outputs; strip them"
    assert _sources(paired) == _sources(jupytext.read(py)), f"{ipynb.name} differs from {py.name}: jupytext --sync"


def _interactive_callbacks(source: str) -> list[str]:
    """Names of the functions a notebook hands to ``interact(fn, …)`` or decorates with ``@interact…``."""
    names = re.findall(r"^\s*interact\(\s*([A-Za-z_]\w*)\s*,", source, re.M)
    names += re.findall(r"^@interact\w*\(.*?\)\s*\ndef ([A-Za-z_]\w*)", source, re.M | re.S)
    return names


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_slider_callback_is_also_called_directly(py):
    """Headless, a widget's callback runs once inside an Output widget, where an exception is only
    printed. So each notebook also calls each callback itself, with other values than the sliders'
    first ones, in a later code cell: executing the notebook (the book, the test below) checks them."""
    cells = [c.source for c in jupytext.read(py).cells if c.cell_type == "code"]
    for name in _interactive_callbacks("\n".join(cells)):
        calls = [c for c in cells if re.search(rf"(?<![\w.]){name}\(", c)
                 and not re.search(rf"def {name}\(", c) and not re.search(rf"interact\(\s*{name}\b", c)]
        assert calls, f"{py.name}: the slider callback {name}() is never called directly in a later cell"




@pytest.fixture(scope="session")
def book(tmp_path_factory, data_available):
    """Every notebook executed once with ``MUSEUMTOK_FAST=1``, headless, widgets and all, by the same
    builder as ``make book`` (museumtok.book), into a temporary folder: {stem: row}, and the folder."""
    from museumtok.book import build_book

    out = tmp_path_factory.mktemp("book")
    rows = build_book(out, fast=True, timeout=600)
    return {r["stem"]: r for r in rows}, out


@pytest.mark.slow
@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(py, book):
    rows, out = book
    r = rows[py.stem]
    print(f"{py.stem}: {r['seconds']:.1f} s")
    assert not r["error"], f"{py.stem} failed:\n{r['error'][-3000:]}"


@pytest.mark.slow
def test_book_index_links_every_notebook_and_pages_have_outputs(book):
    rows, out = book
    index = (out / "index.html").read_text(encoding="utf-8")
    for py in NOTEBOOKS:
        assert f"href='{py.stem}.html'" in index, f"index.html does not link {py.stem}"
        page = (out / f"{py.stem}.html").read_text(encoding="utf-8")
        assert "jp-OutputArea-output" in page, f"{py.stem}.html has no outputs"
        assert "contents</a>" in page
    # offline: nothing is loaded from the network; plotly.js and MathJax are local files
    assert (out / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    pages = {p.stem: p.read_text(encoding="utf-8") for p in out.glob("*.html")}
    for stem, page in pages.items():
        srcs = re.findall(r"<script[^>]*\ssrc=[\"']([^\"']+)", page)
        assert not [s for s in srcs if "://" in s], f"{stem}.html loads {srcs}"
    plotly_pages = [s for s, p in pages.items() if "Plotly.newPlot" in p]
    assert len(plotly_pages) >= 10, plotly_pages
    assert "_static/plotly.min.js" in pages["10_dynamic_tokens"]
    assert "interactive in JupyterLab" in pages["10_dynamic_tokens"], "the sliders are named on the page"
    assert "widget-view+json" not in pages["10_dynamic_tokens"]
