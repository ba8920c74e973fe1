"""The Inpaint tab's callback (§4.6): only the boxed tokens change; bad inputs get a message."""
import pytest

from museumtok.app import inpaint as ip


def test_token_box():
    assert ip.token_box(0.375, 0.25, 0.625, 0.875, 8, 8) == (2, 3, 5, 2)
    assert ip.token_box(0.0, 0.0, 0.01, 0.01, 8, 8) == (0, 0, 1, 1)       # at least one token
    assert ip.token_box(0.0, 0.0, 1.0, 1.0, 8, 8) == (0, 0, 8, 8)
    with pytest.raises(ValueError, match="left < right"):
        ip.token_box(0.6, 0.2, 0.4, 0.8, 8, 8)


def test_inpaint_changes_only_the_box(kodak_path):
    if not ip.available()[0]:
        pytest.skip(ip.available()[1])
    r = ip.inpaint_image(str(kodak_path), 0.25, 0.25, 0.75, 0.5, steps=4, temperature=1.0, seed=1)
    assert r.error is None and r.box == (2, 2, 2, 4)
    top, left, hh, ww = r.box
    inside = r.tokens_before.new_zeros(r.tokens_before.shape, dtype=bool)
    inside[top:top + hh, left:left + ww] = True
    assert (r.tokens_after[~inside] == r.tokens_before[~inside]).all()
    assert len(r.steps) == 4 and r.result.size == (ip.SHOW, ip.SHOW)
    assert "8 of 64 tokens masked" in r.message


def test_bad_inputs_get_messages(tmp_path, kodak_path):
    assert "Upload" in ip.inpaint_image(None).error
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert "Cannot use this file" in ip.inpaint_image(str(broken)).error
    assert "left < right" in ip.inpaint_image(str(kodak_path), 0.8, 0.1, 0.2, 0.9).error
    assert "steps" in ip.inpaint_image(str(kodak_path), steps=0).error


def test_both_decodings_and_what_the_message_says(kodak_path):
    """§4.6: the paper's decoding by default, the review's τ_t schedule on request; the message says which."""
    if not ip.available()[0]:
        pytest.skip(ip.available()[1])
    paper = ip.inpaint_image(str(kodak_path), 0.25, 0.25, 0.75, 0.5, steps=4, seed=1)
    assert paper.error is None and "temperature 1" in paper.message
    same = ip.inpaint_image(str(kodak_path), 0.25, 0.25, 0.75, 0.5, steps=4, seed=1, decoding="paper",
                            temperature=2.5)                       # τ0 is the review's: the paper ignores it
    assert (same.tokens_after == paper.tokens_after).all()
    review = ip.inpaint_image(str(kodak_path), 0.25, 0.25, 0.75, 0.5, steps=4, seed=1, decoding="review",
                              temperature=2.0)
    assert review.error is None and "max(0.1, 2·0.9^t)" in review.message and "not MaskGIT's" in review.message
    top, left, hh, ww = review.box
    inside = review.tokens_before.new_zeros(review.tokens_before.shape, dtype=bool)
    inside[top:top + hh, left:left + ww] = True
    assert (review.tokens_after[~inside] == review.tokens_before[~inside]).all()
    vi = ip.inpaint_image(str(kodak_path), 0.25, 0.25, 0.75, 0.5, steps=4, seed=1, decoding="review", lang="vi")
    assert "bài tổng quan" in vi.message
    assert "decoding" in ip.inpaint_image(str(kodak_path), decoding="top-p").error


def test_decoding_labels_exist_in_both_languages():
    import string

    from museumtok.app.i18n import STRINGS

    for key in ("inpaint_decoding", "inpaint_dec_paper", "inpaint_dec_review", "inpaint_how_paper", "inpaint_how_review"):
        en, vi = STRINGS[key]
        fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}   # noqa: E731
        assert en and vi and en != vi and fields(en) == fields(vi), key


def test_maskgit_comes_from_the_registry_as_a_generator():
    """MaskGIT and its AR twin are registry entries of kind "generator": never in the tokenizer menus, loaded
    by name, and the Inpaint tab's tokenizer and M are the MaskGIT entry's."""
    from museumtok import registry
    from museumtok.app.header import tokenizer_choices

    gens = {e.name: e for e in registry.entries("generator")}
    assert {"maskgit-vqvae-f8-k1024-g8", "ar-vqvae-f8-k1024-g8"} <= set(gens)
    assert not set(gens) & set(tokenizer_choices()) and not set(gens) & set(registry.names("tokenizer"))
    e = gens[ip.MASKGIT]
    assert (e.tokenizer, e.default_M) == (ip.TOKENIZER, ip.M) and registry.get(e.tokenizer).kind == "tokenizer"
    if not ip.available()[0]:
        pytest.skip(ip.available()[1])
    mg, ar = registry.load(ip.MASKGIT), registry.load("ar-vqvae-f8-k1024-g8")
    assert ip.maskgit() is mg and not mg.config.causal and ar.config.causal
    assert mg.config.tokenizer == ar.config.tokenizer == ip.TOKENIZER
    assert mg.config.grid[0] * mg.config.grid[1] == ip.M


def test_museumtok_list_shows_the_generators(capsys):
    from museumtok.cli import main

    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(ip.MASKGIT + " "))
    assert "§4.6" in line and "generator" in line
