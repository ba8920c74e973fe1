"""The app's Codecs tab callback: real bytes, a bits-per-pixel map, JPEG/WebP at the same bits, clear errors."""
import pytest

from museumtok.app import compress as cc


def test_bad_inputs_say_so(artwork_path):
    assert "Upload" in cc.compress_image(None, "hyperprior-q3").error
    assert "unknown" in cc.compress_image(str(artwork_path), "nope").error
    assert "not a learned codec" in cc.compress_image(str(artwork_path), "jpeg").error
    r = cc.compress_image(str(artwork_path), cc.codec_choices()[0] if cc.codec_choices() else "jpeg", size=100)
    assert r.error
    assert cc.codec_notes_markdown(r).startswith("**⚠")


def test_compress_artwork_with_each_family(artwork_path):
    names = cc.codec_choices()
    if not names:
        pytest.skip("no learned codec checkpoint bundled")
    for name in {n.rsplit("-q", 1)[0]: n for n in names}.values():   # one per family
        r = cc.compress_image(str(artwork_path), name, size=256)
        assert r.error is None
        assert r.nbytes > 5 and r.metrics[0]["bits"] == 8 * r.nbytes
        assert r.reconstruction.size == r.original.size == r.bpp_map.size == (256, 256)
        assert [m["method"] for m in r.metrics] == [name, "jpeg @ same bits", "webp @ same bits"]


def test_tokenizer_row_shows_entropy_coded_size(artwork_path):
    from museumtok.app.tokenize import tokenize_image

    r = tokenize_image(str(artwork_path), "lloyd-patch-k256", 64, compare=False)
    note = r.metrics[0]["note"]
    assert "raw 512 bits" in note and "unigram-coded" in note
    coded = int(note.split("unigram-coded ")[1].split(" bits")[0])
    assert 0 < coded <= 512 + 64      # a prior never costs much more than the raw indices
