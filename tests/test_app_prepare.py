"""The preamble every app tab runs (museumtok.app.prepare): each bad input gives its own message, in the
visitor's language, and a good one gives the loaded image, the tokenizer, the checked M and the tokens."""
import io

import pytest
from PIL import Image

from museumtok import registry
from museumtok.app.i18n import t
from museumtok.app.prepare import Prepared, prepare

TOK = "lloyd-patch-k256"


def _png(size=(80, 90)):
    b = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(b, format="PNG")
    return b.getvalue()


@pytest.mark.parametrize("source,name,M,message", [
    (None, TOK, 64, "Upload an image or pick an artwork first."),
    ("   ", TOK, 64, "Upload an image or pick an artwork first."),
    (None, "no-such-tokenizer", 64, "Upload an image"),                  # the source is checked first
    (_png(), "no-such-tokenizer", 64, "unknown tokenizer or codec 'no-such-tokenizer'"),
    (_png(), "jpeg", 64, "jpeg is a codec, not a tokenizer."),
    (_png(), "maskgit-vqvae-f8-k1024-g8", 64, "maskgit-vqvae-f8-k1024-g8 is not a tokenizer"),
    (b"%PDF-1.4 not an image", TOK, 64, "Cannot use this file: this file is not an image"),
    (_png((1, 1)), TOK, 64, "at least 16"),
    (_png(), TOK, 100, f"{TOK} cannot produce M=100 tokens; choose one of 64, 256, 1024"),
    (_png(), TOK, "many", "M must be a whole number, got 'many'"),
])
def test_each_bad_input_gives_its_message(source, name, M, message):
    out = prepare(source, name, M)
    assert isinstance(out, str) and message in out


def test_messages_in_vietnamese():
    assert prepare(None, TOK, 64, lang="vi") == t("need_image", "vi") != t("need_image", "en")
    assert prepare(b"not an image", TOK, 64, lang="vi").startswith("Không dùng được tệp này: ")
    assert prepare(_png(), TOK, 100, lang="vi") == f"{TOK} không tạo được M=100 token; hãy chọn một trong 64, 256, 1024"
    assert prepare(_png(), "jpeg", 64, lang="vi") == t("is_codec", "vi", name="jpeg")


def test_missing_checkpoint_says_how_to_train_it(monkeypatch):
    registry.entries()
    ghost = registry.RegistryEntry(name="ghost-tok", kind="tokenizer",
                                   target="museumtok.tokenizers.lloyd_patch:LloydPatchTokenizer",
                                   description="a tokenizer not trained yet", chapter="9", supported_M=(64,),
                                   default_M=64, checkpoint="ghost-tok-not-here")
    monkeypatch.setitem(registry.REGISTRY, "ghost-tok", ghost)
    out = prepare(_png(), "ghost-tok", 64)
    assert isinstance(out, str) and "ghost-tok-not-here is missing" in out and "museumtok train ghost-tok" in out


def test_codec_kind_and_the_tabs_own_sentence():
    out = prepare(_png(), "jpeg", kind="codec", learned=True, wrong_kind="jpeg is not a learned codec")
    assert out == "jpeg is not a learned codec"
    p = prepare(_png(), "jpeg", 64, kind="codec")                        # M does not apply to a codec
    assert isinstance(p, Prepared) and p.M is None and p.tokens is None and p.model is registry.load("jpeg")


def test_good_input_is_loaded_checked_and_encoded():
    said = []
    p = prepare(_png(), TOK, "256", encode=True, progress=lambda f, d: said.append((f, d)))
    assert isinstance(p, Prepared)
    assert p.image.size == (80, 90) and p.entry.name == TOK and p.model is registry.load(TOK)
    assert p.M == 256 and p.tokens.M == 256 and p.tokens.indices.numel() == 256
    assert (0.4, t("encoding")) in said and all(0 < f < 1 for f, _ in said)
    default = prepare(_png(), TOK)                                        # no M: the tokenizer's default
    assert default.M == registry.get(TOK).default_M and default.tokens is None
