"""`museumtok weights add/list` (museumtok/weights.py): files checked by content (torch.hub's hash-prefix
rule, or the full sha256 where known) and copied where their library looks; LPIPS then computes with no
other step. Caches are tmp folders (TORCH_HOME, HF_HUB_CACHE, MUSEUMTOK_CACHE)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from museumtok import weights as W
from museumtok.cli import main


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_every_hub_file_name_carries_the_prefix_torch_hub_checks():
    for p in W.KNOWN.values():
        if p.place == "hub":
            assert p.hash_prefix and re.fullmatch(r"[0-9a-f]{8,}", p.hash_prefix), p.filename
            assert p.url.endswith("/" + p.filename)
            # the same regex torch.hub.download_url_to_file(hash_prefix=...) is fed from
            assert torch.hub.HASH_REGEX.search(p.filename).group(1) == p.hash_prefix
        elif p.place == "lpips":
            assert p.sha256 and len(p.sha256) == 64
    # CompressAI's own zoo names the same files
    from compressai.zoo.image import model_urls

    for (arch, q), p in W.COMPRESSAI_FILES.items():
        assert model_urls[arch]["mse"][q] == p.url


def test_a_file_is_accepted_by_content_and_copied_where_torch_hub_looks(caches, monkeypatch, tmp_path):
    data = b"published weights, for the test" * 100
    digest = hashlib.sha256(data).hexdigest()
    toy = W.Published("toy", f"toy-{digest[:8]}.pth", f"https://example.org/toy-{digest[:8]}.pth", "a test file")
    monkeypatch.setitem(W.KNOWN, "toy", toy)
    assert W.locate("toy") is None and "toy-" in W.missing_reason("toy")
    renamed = tmp_path / "downloaded.bin"              # a renamed download is still recognised by its content
    renamed.write_bytes(data)
    rc, out, _ = cli("weights", "add", str(renamed))
    assert rc == 0 and "ok:" in out and f"sha256 starts with {digest[:8]}" in out
    assert W.locate("toy") == W.hub_checkpoint_dir() / toy.filename
    assert (W.hub_checkpoint_dir() / toy.filename).read_bytes() == data
    rc, out, _ = cli("weights", "list")
    assert rc == 0 and re.search(r"^toy\s+present", out, re.M)


def test_a_wrong_file_under_a_known_name_is_refused(caches, tmp_path):
    fake = tmp_path / "alexnet-owt-7be5be79.pth"
    fake.write_bytes(b"not alexnet")
    rc, _, err = cli("weights", "add", str(fake))
    assert rc == 1 and "refused" in err and "expected 7be5be79" in err
    assert not (W.hub_checkpoint_dir() / fake.name).exists()
    other = tmp_path / "something.pth"
    other.write_bytes(b"x")
    res = W.add(other)
    assert res.dest is None and "none of the known files" in res.message
    from museumtok.metrics import lpips_available

    ok, reason = lpips_available()
    assert not ok and "museumtok weights add alexnet-owt-7be5be79.pth" in reason


def test_the_lpips_heads_match_their_full_sha256():
    d = W.lpips_weights_dir()
    if d is None:
        pytest.skip("lpips not installed")
    for key in ("lpips-linear-alex", "lpips-linear-vgg", "lpips-linear-squeeze"):
        p = W.KNOWN[key]
        f = d / p.filename
        assert W.identify(f) == p and W.locate(key) == f
        res = W.add(f, copy=False)
        assert res.key == key and "full sha256" in res.message


def test_lpips_is_computed_once_its_backbone_is_added(caches, monkeypatch, tmp_path):
    """A random SqueezeNet 1.1 stands in for torchvision's ImageNet file (the alex/vgg ones are 233/528 MB);
    the known list is told its digest, as it knows the real file's prefix."""
    pytest.importorskip("lpips")
    import torchvision

    from museumtok.metrics import perceptual

    torch.manual_seed(0)
    f = tmp_path / "squeezenet1_1-b8a52dc0.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), f)
    digest = W.sha256_of(f)
    monkeypatch.setitem(W.KNOWN, "lpips-squeezenet", dataclasses.replace(W.KNOWN["lpips-squeezenet"], sha256=digest))
    perceptual._model.cache_clear()
    assert not perceptual.lpips_available("squeeze")[0]
    rc, out, _ = cli("weights", "add", str(f))
    assert rc == 0 and "lpips-squeezenet" in out
    assert perceptual.lpips_available("squeeze")[0]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    try:
        d_same, d_diff = perceptual.lpips_distance(x, x, net="squeeze"), perceptual.lpips_distance(x, y, net="squeeze")
    finally:
        perceptual._model.cache_clear()
    assert d_same.shape == (2,) and torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    assert torch.all(d_diff > 0)


def test_weights_list_says_where_each_file_goes(caches):
    rc, out, _ = cli("weights", "list")
    assert rc == 0
    for p in W.KNOWN.values():
        assert p.key in out
    assert f"needs alexnet-owt-7be5be79.pth in {caches / 'torch' / 'hub' / 'checkpoints'}" in out
    assert "needs amused/amused-256/vqvae" in out
    rows = W.status()
    assert {r["key"] for r in rows} == set(W.KNOWN)
    assert all(r["present"] == (r["path"] is not None) for r in rows)
