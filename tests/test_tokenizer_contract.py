"""Every tokenizer in the registry keeps the one contract, at every M it offers."""
import math

import pytest
import torch

import museumtok
from museumtok import registry
from museumtok.tokenizers.base import UnsupportedM

TOKENIZERS = registry.names("tokenizer")


def _sample_Ms(entry):
    s = entry.supported_M
    return sorted({s[0], s[len(s) // 2], s[-1]}) if entry.m_is_range else list(s)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_contract(name, artwork_path):
    tok = museumtok.load(name)
    entry = registry.get(name)
    assert tuple(tok.supported_M) == tuple(entry.supported_M)
    from PIL import Image

    w, h = Image.open(artwork_path).size
    for M in _sample_Ms(entry):
        t = tok.encode(artwork_path, M=M)
        assert t.M == M and t.K == tok.K
        idx = t.flat()
        assert idx.dtype == torch.long and 0 <= int(idx.min()) and int(idx.max()) < tok.K
        assert t.boxes.shape == (M, 4)
        assert (t.boxes[:, 0] >= 0).all() and (t.boxes[:, 2] <= w).all() and (t.boxes[:, 3] <= h).all()
        assert (t.boxes[:, 2] > t.boxes[:, 0]).all()
        assert t.bits_raw == pytest.approx(M * math.log2(tok.K))
        x_hat = tok.decode(t)
        S = tok.working_size(M)
        assert x_hat.shape == (3, S, S) and 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
        again = tok.encode(artwork_path, M=M)
        assert torch.equal(again.indices, t.indices), "encoding is deterministic"
        assert len(t.token_records()) == M


@pytest.mark.parametrize("name", TOKENIZERS)
def test_wrong_M_is_a_clear_error(name):
    tok = museumtok.load(name)
    with pytest.raises(UnsupportedM, match="choose"):
        tok.check_M(max(tok.supported_M) + 7)
    with pytest.raises(UnsupportedM, match="whole number"):
        tok.check_M("lots")


def test_lloyd_patch_roundtrip_of_its_own_codewords():
    tok = museumtok.load("lloyd-patch-k256")
    idx = torch.randint(0, 256, (1, 8, 8), generator=torch.Generator().manual_seed(0))
    x = tok.decode_indices(idx, 64)
    assert torch.equal(tok.encode_tensor(x, 64), idx) or (tok.encode_tensor(x, 64) != idx).float().mean() < 0.02


def test_lloyd_patch_beats_a_random_codebook(kodak_path):
    from museumtok.eval.metrics import evaluate_tokenizer
    from museumtok.tokenizers.lloyd_patch import LloydPatchTokenizer

    trained = museumtok.load("lloyd-patch-k256")
    rand = LloydPatchTokenizer(K=256)
    a = evaluate_tokenizer(trained, "kodak", 256, limit=4)
    b = evaluate_tokenizer(rand, "kodak", 256, limit=4)
    assert a["psnr"] > b["psnr"] + 5


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="lloyd-patch-k1024"):
        museumtok.load("no-such-tokenizer")


def test_registry_entries_are_complete():
    for e in registry.entries():
        assert e.description and e.chapter
        if e.kind == "tokenizer":
            assert e.supported_M and e.default_M in e.supported_M
            # published tokenizers (weights the user brings) may be absent; ours must be bundled
            assert e.available or e.weights, f"{e.name}: checkpoint {e.checkpoint} not bundled"
