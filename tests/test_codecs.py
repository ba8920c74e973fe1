"""JPEG / WebP at a quality and at a bit budget."""
import pytest
import torch

import museumtok
from museumtok.data import load_image, working_image


@pytest.fixture(scope="module")
def x(kodak_path):
    return working_image(load_image(kodak_path).image, 256).x


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_roundtrip_and_quality(name, x):
    codec = museumtok.load(name)
    lo, hi = codec.compress(x, quality=10), codec.compress(x, quality=90)
    assert lo.bits < hi.bits
    y = codec.decompress(hi)
    assert y.shape == x.shape
    assert float((y - x).abs().mean()) < 0.05
    with pytest.raises(ValueError, match="quality"):
        codec.compress(x, quality=0)


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_budget_picks_the_highest_quality_that_fits(name, x):
    codec = museumtok.load(name)
    budget = codec.compress(x, quality=50).bits + 100
    r = codec.compress_at_bits(x, budget)
    assert r.fits and r.encoded.bits <= budget
    q = r.encoded.params["quality"]
    assert q >= 50
    if q < 100:
        assert codec.compress(x, quality=q + 1).bits > budget or codec.compress(x, quality=min(100, q + 5)).bits > budget


def test_budget_too_small_says_so(x):
    r = museumtok.load("jpeg").compress_at_bits(x, 100)
    assert not r.fits and r.encoded.params["quality"] == 1
    assert "cannot fit" in r.note()
