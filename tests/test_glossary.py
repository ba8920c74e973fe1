"""The Vietnamese glossary and the notebooks' Vietnamese cells agree (fast: nothing is executed).

Every notebook opens with its title cell, then a ``## Tóm tắt`` cell (a Vietnamese summary) and a
``## Thuật ngữ`` cell (a table ``Tiếng Việt | English | ký hiệu`` of the terms it introduces, and a
link to ``docs/glossary.md``). Every term of those tables is an entry of the glossary, with the same
English term and symbol, and the glossary lists that notebook for it. The ``.ipynb`` pair carries the
same cells and no outputs.
"""
import json
import re
import unicodedata
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
GLOSSARY = ROOT / "docs" / "glossary.md"
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.py") if p.read_text().startswith("# ---\n# jupyter:"))
VI_LETTERS = set("ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ")


def _norm(s: str) -> str:
    """Compare terms as text: NFC, no Markdown emphasis, single spaces, case-folded."""
    s = unicodedata.normalize("NFC", s).replace("*", "")
    return re.sub(r"\s+", " ", s).strip().casefold()


def _nb_id(path: Path) -> str:
    """``04_2_ste_ema`` → ``04_2``, ``06_integration`` → ``06``: the id the glossary's Notebook column uses."""
    return re.match(r"\d\d(?:_\d)?(?=_)", path.stem).group(0)


def _table_rows(lines, first_header: str):
    """Rows (lists of stripped cells) of every Markdown table whose header's first cell is ``first_header``."""
    rows, in_table, header_seen = [], False, False
    for line in lines:
        line = line.strip()
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not in_table:
            in_table = cells[0] == first_header
            header_seen = in_table
            continue
        if header_seen and set("".join(cells)) <= set("-: "):
            header_seen = False  # the |---| separator
            continue
        rows.append(cells)
    return rows


def _glossary() -> dict[str, dict]:
    entries = {}
    for cells in _table_rows(GLOSSARY.read_text().splitlines(), "Tiếng Việt"):
        assert len(cells) == 5, f"glossary row needs 5 cells (vi | en | symbol | explanation | notebooks): {cells}"
        vi, en, sym, explanation, nbs = cells
        key = _norm(vi)
        assert key not in entries, f"glossary lists {vi!r} twice"
        entries[key] = {"vi": vi, "en": en, "sym": sym, "explanation": explanation,
                        "notebooks": set(re.findall(r"\d\d(?:_\d)?", nbs))}
    return entries


@pytest.fixture(scope="module")
def glossary():
    assert GLOSSARY.is_file(), "docs/glossary.md is missing"
    return _glossary()


def _markdown_cells(nb):
    return [c.source.strip() for c in nb.cells if c.cell_type == "markdown"]


def test_glossary_entries_are_complete(glossary):
    assert len(glossary) >= 150, f"only {len(glossary)} glossary entries"
    ids = {_nb_id(p) for p in NOTEBOOKS}
    for key, e in glossary.items():
        assert e["vi"] and e["en"] and e["explanation"], f"incomplete glossary entry {e}"
        assert e["notebooks"], f"{e['vi']!r}: no notebook listed"
        assert e["notebooks"] <= ids, f"{e['vi']!r}: unknown notebook ids {e['notebooks'] - ids}"
    # App. A's notation is there, and the y/z swap of §5.1 is pointed out
    text = GLOSSARY.read_text()
    for sym in (r"$x$", r"$\hat{x}$", r"$z_e$", r"$z_q$", r"$e_k$", r"$K$", r"$M$", r"$L$", r"$d$", r"$R$", r"$D$",
                r"$\beta$", r"$\lambda$", r"$H$", r"$\tau$", r"$\gamma$"):
        assert sym in text, f"symbol {sym} missing from the glossary"
    assert "s5-1-notation" in text and "hyper-latent" in text


def test_glossary_lists_every_notebook():
    text = GLOSSARY.read_text()
    for p in NOTEBOOKS:
        assert f"../notebooks/{p.stem}.ipynb" in text, f"docs/glossary.md does not list {p.name}"


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_summary_and_glossary_cells(py, glossary):
    cells = jupytext.read(py).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), f"{py.name}: first cell is not the title"
    summary, terms = cells[1], cells[2]
    assert summary.cell_type == "markdown" and summary.source.startswith("## Tóm tắt"), \
        f"{py.name}: the cell after the title must be the '## Tóm tắt' summary"
    assert terms.cell_type == "markdown" and terms.source.startswith("## Thuật ngữ"), \
        f"{py.name}: the second cell after the title must be the '## Thuật ngữ' glossary cell"

    body = summary.source.split("\n", 1)[1].strip()
    assert 200 <= len(body) <= 1500, f"{py.name}: the summary should be 3–6 sentences ({len(body)} characters)"
    assert len(set(body.casefold()) & VI_LETTERS) >= 5, f"{py.name}: the summary is not in Vietnamese"

    assert "../docs/glossary.md" in terms.source, f"{py.name}: the Thuật ngữ cell must link ../docs/glossary.md"
    lines = terms.source.splitlines()
    assert any(re.fullmatch(r"\|\s*Tiếng Việt\s*\|\s*English\s*\|\s*ký hiệu\s*\|", line.strip()) for line in lines), \
        f"{py.name}: the Thuật ngữ table needs the header | Tiếng Việt | English | ký hiệu |"
    rows = _table_rows(lines, "Tiếng Việt")
    assert rows, f"{py.name}: the Thuật ngữ table is empty"
    nb_id = _nb_id(py)
    for cells in rows:
        assert len(cells) == 3, f"{py.name}: row {cells} needs 3 cells"
        vi, en, sym = cells
        e = glossary.get(_norm(vi))
        assert e is not None, f"{py.name}: term {vi!r} is not in docs/glossary.md"
        assert _norm(en) == _norm(e["en"]), f"{py.name}: {vi!r} is {en!r} here but {e['en']!r} in the glossary"
        assert sym == e["sym"], f"{py.name}: {vi!r} has symbol {sym!r} here but {e['sym']!r} in the glossary"
        assert nb_id in e["notebooks"], f"docs/glossary.md: {vi!r} does not list notebook {nb_id}"


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_pair_has_the_same_cells_and_no_outputs(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {py.relative_to(ROOT)}`"
    raw = ipynb.read_text()
    assert '"output_type"' not in raw, f"{ipynb.name} has outputs; strip them"
    paired = nbformat.read(ipynb, as_version=4)
    for c in paired.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{ipynb.name} has outputs; strip them"
    source = jupytext.read(py)
    assert _markdown_cells(paired) == _markdown_cells(source), f"{ipynb.name} differs from {py.name}: jupytext --sync"
    assert [(c.cell_type, c.source.strip()) for c in paired.cells] == \
        [(c.cell_type, c.source.strip()) for c in source.cells], f"{ipynb.name} differs from {py.name}: jupytext --sync"
    assert json.loads(raw)["cells"][1]["source"][0].startswith("## Tóm tắt")
