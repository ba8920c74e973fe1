"""Where images are looked up ($MUSEUMTOK_DATA first), and what the app and the CLI say when none is found."""
import sys

import pytest

from museumtok import cli, paths
from museumtok.app import header as hd
from museumtok.data.catalog import load_catalog


# ---- search order ---------------------------------------------------------------------------------------------------
def test_image_roots_order(monkeypatch, tmp_path):
    monkeypatch.delenv("MUSEUMTOK_DATA", raising=False)
    shared = paths.REPO_ROOT.parent / "shared" / "data"
    assert paths.image_roots()[:2] == [paths.DOWNLOAD_DIR, shared]
    monkeypatch.setenv("MUSEUMTOK_DATA", str(tmp_path))
    assert paths.image_roots()[:3] == [tmp_path, paths.DOWNLOAD_DIR, shared]


def test_museumtok_data_overrides_a_download(monkeypatch, tmp_path):
    first, second = load_catalog(collection="kodak")[:2]
    download, mine = tmp_path / "images", tmp_path / "mine"
    for e in (first, second):
        (download / e.collection).mkdir(parents=True, exist_ok=True)
        (download / e.collection / e.file).write_bytes(b"downloaded")
    (mine / first.collection).mkdir(parents=True)
    (mine / first.collection / first.file).write_bytes(b"mine")
    monkeypatch.setattr(paths, "DOWNLOAD_DIR", download)

    monkeypatch.delenv("MUSEUMTOK_DATA", raising=False)
    assert first.find() == download / first.relpath             # no variable: the download

    monkeypatch.setenv("MUSEUMTOK_DATA", str(mine))
    assert first.find() == mine / first.relpath                 # the variable wins over the download
    assert first.find().read_bytes() == b"mine"
    assert second.find() == download / second.relpath           # what it lacks comes from the next folder


# ---- the hint --------------------------------------------------------------------------------------------------------
def test_museumtok_command_names_the_venv_only_when_running_from_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "prefix", str(paths.REPO_ROOT / ".venv"))
    assert paths.museumtok_command() == ".venv/bin/museumtok"
    monkeypatch.setattr(sys, "prefix", str(tmp_path))           # e.g. an activated conda environment
    assert paths.museumtok_command() == "museumtok"


@pytest.fixture
def no_images(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "image_roots", lambda: [tmp_path / "nothing-here"])
    monkeypatch.setattr(sys, "prefix", str(paths.REPO_ROOT / ".venv"))
    return tmp_path


def test_no_images_hint_says_what_to_do(no_images):
    hint = paths.no_images_hint()
    assert hint.startswith("No catalog images found: run `.venv/bin/museumtok data fetch`")
    assert "MUSEUMTOK_DATA" in hint and str(no_images / "nothing-here") in hint


def test_app_gallery_says_how_to_get_images(no_images):
    items = hd.catalog_gallery()
    assert items == []
    label = hd.gallery_label(items)
    assert "No catalog images found" in label and ".venv/bin/museumtok data fetch" in label
    assert "MUSEUMTOK_DATA" in label
    md = hd.catalog_hint(items)
    assert "No catalog images found" in md and "`.venv/bin/museumtok data fetch`" in md and "restart" in md


def test_app_gallery_label_is_the_usual_one_with_images():
    items = [("thumb.jpg", "a caption")]
    assert hd.gallery_label(items) == hd.GALLERY_LABEL
    assert hd.catalog_hint(items) == ""


@pytest.mark.parametrize("argv", [
    ["eval", "rd", "--set", "kodak", "--limit", "1", "--codecs", "", "--tokenizers", ""],
    ["train", "lloyd-patch", "--K", "16"],
    ["bench", "--fast", "--no-plots", "--quiet"],
], ids=["eval-rd", "train", "bench"])
def test_cli_prints_the_hint_instead_of_a_traceback(no_images, capsys, monkeypatch, argv):
    monkeypatch.chdir(no_images)
    assert cli.main(argv + ["--out", str(no_images / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "No catalog images found: run `.venv/bin/museumtok data fetch`" in err and "MUSEUMTOK_DATA" in err
    assert not (no_images / "out").exists() or argv[0] == "train"
