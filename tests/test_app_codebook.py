"""The codebook-health panel's callback, called directly: numbers, figure and every bad input."""
import io
import math

import pytest
import torch
from PIL import Image

from museumtok import registry
from museumtok.app.codebook import codebook_health, health_markdown

NAMES = [n for n in ("vqvae-f8-k1024", "dvae-f8-k1024", "lloyd-patch-k256") if n in registry.names("tokenizer")]


@pytest.mark.parametrize("name", NAMES)
def test_health_of_an_artwork(artwork_path, name):
    r = codebook_health(str(artwork_path), name, 256)
    assert r.error is None
    s = r.stats
    assert s["M"] == 256 and s["K"] == registry.load(name).K
    assert s["used"] + s["dead"] == s["K"] and 1 <= s["used"] <= min(s["M"], s["K"])
    assert 1.0 <= s["perplexity"] <= s["max_perplexity"] + 1e-6 == min(s["M"], s["K"]) + 1e-6
    # the same numbers straight from the tokens: exp(-Σ p log p) over the image's code frequencies
    idx = registry.load(name).encode(artwork_path, 256).flat()
    p = torch.bincount(idx).double()
    p = p[p > 0] / p.sum()
    assert s["perplexity"] == pytest.approx(math.exp(float(-(p * p.log()).sum())), rel=1e-9)
    bars = r.figure.data[0]
    assert len(bars.y) == s["K"] and int(sum(bars.y)) == 256 and list(bars.y) == sorted(bars.y, reverse=True)
    assert f"{s['used']}" in health_markdown(r)
    # the rate these tokens cost under the checkpoint's prior.json
    assert s["bits_coded"] == pytest.approx(registry.load(name).entropy_bits(idx)) and "Range-coded" in r.markdown


def _png(img):
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


@pytest.mark.parametrize("source,name,M,message", [
    (None, "lloyd-patch-k256", 256, "Upload an image"),
    (b"%PDF-1.4 not an image", "lloyd-patch-k256", 256, "not an image"),
    (_png(Image.new("RGB", (64, 64))), "jpeg", None, "codec"),
    (_png(Image.new("RGB", (64, 64))), "no-such-tokenizer", 256, "unknown"),
    (_png(Image.new("RGB", (64, 64))), "lloyd-patch-k256", 100, "choose one of"),
])
def test_bad_inputs_return_messages(source, name, M, message):
    r = codebook_health(source, name, M)
    assert r.error and message in r.error and r.figure is None
    assert health_markdown(r).startswith("**⚠")
