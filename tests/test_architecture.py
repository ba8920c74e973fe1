"""The architecture documents stay true: the method → file map is what the code says, every path it
names exists, and the package has no import circle."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_method_map_is_current_and_its_files_exist():
    sys.path.insert(0, str(ROOT / "docs" / "architecture"))
    import method_map

    committed = (ROOT / "docs" / "architecture" / "methods.md").read_text()
    assert committed == method_map.markdown(), "run: .venv/bin/python docs/architecture/method_map.py --write"
    paths = set(re.findall(r"(?:museumtok|notebooks)/[\w/]+\.py", committed))
    assert len(paths) > 20
    assert [p for p in paths if not (ROOT / p).is_file()] == []
    from museumtok import registry

    for e in registry.entries():                          # every registry entry has its row
        assert e.name in committed


def test_no_import_circle():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "architecture" / "import_graph.py")],
                         capture_output=True, text=True, check=True).stdout
    assert "import circles between modules: 0" in out, out
