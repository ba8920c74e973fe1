"""Catalog, checksums, split, image loading (every mode, EXIF, bad files) and the datasets."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from museumtok import paths
from museumtok.data import ImageLoadError, load_catalog, load_image, working_image
from museumtok.data.catalog import ChecksumMismatch, DataNotFound, sha256_file, verify_file
from museumtok.data.dataset import ArtworkCrops, random_crop


def test_catalog_counts_and_split():
    cat = load_catalog()
    assert len(cat) == 129
    art = [e for e in cat if e.collection == "artworks"]
    kodak = [e for e in cat if e.collection == "kodak"]
    assert len(art) == 105 and len(kodak) == 24
    assert {e.split for e in kodak} == {"test"}, "Kodak is test-only"
    counts = {s: sum(e.split == s for e in art) for s in ("train", "val", "test")}
    assert counts == {"train": 80, "val": 10, "test": 15}
    assert len({e.id for e in cat}) == len(cat)
    for e in cat:
        assert len(e.sha256) == 64
        assert e.url.startswith(f"https://raw.githubusercontent.com/{e.source_repo}/{e.source_commit}/")
        assert len(e.source_commit) == 40


def test_split_is_a_function_of_the_id():
    from museumtok.data.build_catalog import split_for

    ids = [e.id for e in load_catalog(collection="artworks")]
    assert split_for(ids) == {e.id: e.split for e in load_catalog(collection="artworks")}


def test_files_match_checksums_and_sizes(data_available):
    for e in load_catalog():
        p = e.find(verify=True)
        assert p.stat().st_size == e.bytes
        if e.collection == "kodak":
            assert Image.open(p).size == (e.width, e.height)


def test_kodak_checksums_agree_with_source_md(data_available):
    text = load_catalog(collection="kodak")[0].find().parent / "SOURCE.md"
    if not text.exists():
        pytest.skip(f"no SOURCE.md beside the Kodak images in {text.parent}")
    listed = dict(reversed(line.split()) for line in text.read_text().splitlines() if line.endswith(".png") and len(line.split()) == 2)
    for e in load_catalog(collection="kodak"):
        assert listed[e.file] == e.sha256


def test_verify_detects_a_changed_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    verify_file(p, sha256_file(p))
    with pytest.raises(ChecksumMismatch):
        verify_file(p, "0" * 64)


def test_missing_image_says_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "image_roots", lambda: [tmp_path])
    with pytest.raises(DataNotFound, match="museumtok data fetch"):
        load_catalog()[0].find()


def test_data_env_variable_is_searched(monkeypatch, tmp_path, data_available):
    e = load_catalog(collection="kodak")[0]
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / e.file).write_bytes(e.find().read_bytes())
    monkeypatch.setenv("MUSEUMTOK_DATA", str(tmp_path))
    roots = paths.image_roots()
    assert tmp_path in roots and roots.index(tmp_path) < len(roots) - 1


# ---- image loading ------------------------------------------------------------------------------
def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def test_modes_convert_to_rgb_correctly():
    gray = Image.fromarray(np.full((32, 32), 100, np.uint8), "L")
    assert load_image(_png(gray)).image.getpixel((0, 0)) == (100, 100, 100)
    la = Image.new("LA", (32, 32), (50, 0))  # fully transparent -> white
    assert load_image(_png(la)).image.getpixel((0, 0)) == (255, 255, 255)
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 128))  # half red over white
    px = load_image(_png(rgba)).image.getpixel((0, 0))
    assert px[0] == 255 and abs(px[1] - 127) <= 1
    p = Image.new("RGB", (32, 32), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(_png(p)).image.getpixel((0, 0)) == (10, 200, 30)
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in naive CMYK
    assert load_image(_png(cmyk, "TIFF")).image.getpixel((0, 0)) == (255, 0, 0)
    arr16 = np.full((32, 32), 65535 // 2, np.uint16)
    i16 = Image.fromarray(arr16, "I;16")
    out = load_image(_png(i16)).image
    assert abs(out.getpixel((0, 0))[0] - 128) <= 1, "16-bit must be scaled, not clipped"


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW to display
    out = load_image(_png(img, "JPEG", exif=exif, quality=95))
    assert out.image.size == (20, 40)
    assert out.image.getpixel((10, 5))[0] > 200, "the red half is on top after rotation"
    assert any("EXIF" in n for n in out.notes)


def test_bad_inputs_get_clear_messages(tmp_path):
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(b"this is a text file, not a picture")
    good = _png(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(good[: len(good) // 2])
    with pytest.raises(ImageLoadError, match="at least 16"):
        load_image(_png(Image.new("RGB", (1, 1))))
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(_png(Image.new("L", (8000, 6000))))  # 48 MP, compresses to a few KB: a bomb
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(b"\0" * 100, max_bytes=10)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    b = io.BytesIO()
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(b.getvalue())
    assert out.n_frames == 2 and out.image.getpixel((0, 0))[0] > 200
    assert any("first frame" in n for n in out.notes)


def test_working_image_boxes_map_back():
    img = Image.new("RGB", (300, 200))
    wi = working_image(img, 100)
    assert wi.crop_box == (50, 0, 250, 200) and wi.x.shape == (3, 100, 100)
    box = wi.to_original(torch.tensor([[0, 0, 100, 100]]))
    assert box.tolist() == [[50, 0, 250, 200]]


def test_datasets(data_available):
    ds = ArtworkCrops("val", size=64, train=True, crops_per_image=2)
    assert len(ds) == 20
    x = ds[0]
    assert x.shape == (3, 64, 64) and 0 <= x.min() and x.max() <= 1
    ev = ArtworkCrops("val", size=64, train=False)
    assert torch.equal(ev[3], ev[3]), "evaluation crops are deterministic"
    with pytest.raises(ValueError, match="never trained"):
        ArtworkCrops(collection="kodak", train=True)


def test_random_crop_scale_and_flip():
    import random

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    r = random.Random(0)
    for _ in range(5):
        assert random_crop(img, 64, 3.0, r).shape == (3, 64, 64)


def test_your_own_collection_catalog_and_training(tmp_path, data_available):
    """`data catalog --folder` then `train lloyd-patch` on it, through MUSEUMTOK_CATALOG / MUSEUMTOK_DATA."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from museumtok.data.build_catalog import build_from_folder, split_fractions

    art = tmp_path / "mine" / "artworks"
    art.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(8):
        x = (torch.rand(3, 80 + 8 * i, 96, generator=g) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(x).save(art / f"My Work_{i}.png")
    (art / "notes.txt").write_text("not an image")
    entries = build_from_folder(tmp_path / "mine")
    assert [e.id for e in entries] == [f"my-work_{i}" for i in range(8)]
    assert {e.split for e in entries} == {"train", "val", "test"}
    assert entries[0].title == "My Work 0" and entries[0].height == 80
    assert split_fractions([e.id for e in entries]) == {e.id: e.split for e in entries}

    env = dict(os.environ, MUSEUMTOK_DATA=str(tmp_path / "mine"), MUSEUMTOK_CATALOG=str(tmp_path / "mine" / "catalog.csv"),
               OMP_NUM_THREADS="1")
    run = lambda *a: subprocess.run([sys.executable, "-m", "museumtok", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=600, cwd=tmp_path)
    r = run("data", "catalog", "--folder", str(tmp_path / "mine"))
    assert r.returncode == 0, r.stderr
    assert "8 of yours, 24 Kodak" in r.stdout
    out = tmp_path / "ckpt"
    r = run("train", "lloyd-patch", "--K", "16", "--iters", "2", "--crops-per-image", "1", "--n-patches", "2000",
            "--sizes", "64", "--out", str(out), "--eval-sets", "artworks-test")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and "artworks-test" in (out / "README.md").read_text()

    with pytest.raises(FileNotFoundError, match="artworks"):
        build_from_folder(tmp_path / "empty")
