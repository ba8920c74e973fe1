"""The app's header, Tokenize and Context budget callbacks, called directly (no server): good input, every bad
input, budget."""
import io

import numpy as np
import pytest
from PIL import Image

from museumtok.app import budget as bud
from museumtok.app import header as hd
from museumtok.app import tokenize as tk
from museumtok.llm.budget import ContextBudget, text_tokens_from_words


def test_tokenize_an_artwork(artwork_path):
    r = tk.tokenize_image(str(artwork_path), "lloyd-patch-k1024", 256)
    assert r.error is None
    assert r.reconstruction.size == (128, 128) and r.original.size == (128, 128)
    methods = [m["method"] for m in r.metrics]
    assert methods == ["lloyd-patch-k1024", "jpeg @ same bits", "webp @ same bits"]
    row = r.metrics[0]
    # the bits are the entropy-coded size under the checkpoint's prior.json, the raw M·log2 K in the note
    coded = r.tokens.bits_coded
    assert row["M"] == 256 and row["bits"] == round(coded) and "raw 2560 bits" in row["note"]
    assert row["bpp"] == pytest.approx(coded / 128**2, abs=1e-4) and "unigram-coded" in row["note"]
    assert 10 < row["PSNR dB"] < 60
    assert r.grid is not None and r.budget is not None
    assert len(r.metrics_rows()[0]) == len(tk.METRIC_COLUMNS)
    if row["LPIPS"] == "n/a":
        assert any("LPIPS n/a" in n for n in r.notes)


def _bytes(img, fmt="PNG"):
    b = io.BytesIO()
    img.save(b, format=fmt)
    return b.getvalue()


@pytest.mark.parametrize("source,message", [
    (None, "Upload an image"),
    (b"%PDF-1.4 not an image", "not an image"),
    (_bytes(Image.new("RGB", (1, 1))), "at least 16"),
    (_bytes(Image.new("L", (7000, 7000))), "megapixels"),
])
def test_bad_inputs_return_messages(source, message):
    r = tk.tokenize_image(source, "lloyd-patch-k1024", 256)
    assert r.error and message in r.error
    assert message in tk.notes_markdown(r)


def test_truncated_file(tmp_path):
    data = _bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    p = tmp_path / "broken.jpg"
    p.write_bytes(data[:300])
    r = tk.tokenize_image(str(p), "lloyd-patch-k1024", 64)
    assert "damaged or truncated" in r.error


def test_wrong_M_and_wrong_name(artwork_path):
    assert "choose one of 64, 256, 1024" in tk.tokenize_image(str(artwork_path), "lloyd-patch-k1024", 100).error
    assert "unknown tokenizer" in tk.tokenize_image(str(artwork_path), "nope", 64).error
    assert "codec" in tk.tokenize_image(str(artwork_path), "jpeg", 64).error


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "L", "P"])
def test_unusual_modes_work(mode):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 90, 3), np.uint8)).convert(mode)
    r = tk.tokenize_image(_bytes(img, "TIFF"), "lloyd-patch-k256", 64)
    assert r.error is None and r.reconstruction.size == (64, 64)


def test_menus():
    assert "lloyd-patch-k1024" in hd.tokenizer_choices()
    values, default = hd.m_choices("lloyd-patch-k1024")
    assert values == [64, 256, 1024] and default == 256
    assert hd.m_slider_range("lloyd-patch-k1024") is None
    from museumtok import registry

    for e in registry.entries():
        if e.m_is_range:
            assert hd.m_slider_range(e.name) == (e.supported_M[0], e.supported_M[-1])


def test_gallery(data_available):
    items = hd.catalog_gallery()
    assert len(items) == 105
    assert "Mona Lisa" in " ".join(c for _, c in items)
    assert hd.gallery_entry(0).collection == "artworks"


def test_review_chapter_1_budget_case():
    text = text_tokens_from_words(1500)
    b = ContextBudget(context=4096, images=10, M=256, text_tokens=text)
    assert b.image_tokens == 10 * 258 and not b.fits
    assert ContextBudget(context=4096, images=10, M=64, text_tokens=text).fits
    fig, summary = bud.budget(4096, 10, 256, text)
    assert "overflows" in summary
    assert bud.budget("x", 1, 1, 1)[0] is None


def test_the_server_keeps_connections_alive_longer_than_clients_do():
    import uvicorn

    from museumtok.app.server import KEEP_ALIVE_S, longer_keep_alive

    longer_keep_alive()
    longer_keep_alive()                                   # idempotent
    assert uvicorn.Config(app=None).timeout_keep_alive == KEEP_ALIVE_S > 5
    assert uvicorn.Config(app=None, timeout_keep_alive=7).timeout_keep_alive == 7
