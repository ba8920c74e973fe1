"""Tokenizers carry their rate: the unigram prior saved with each checkpoint (prior.json), ``bits_coded``
from it, and ``museumtok.entropy`` kept to the maths (no registry, dataset or tokenizer imports)."""
import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from museumtok import registry
from museumtok.entropy.unigram import UnigramPrior, load_priors, save_priors
from museumtok.tokenizers.prior import (PRIOR_FILE, code_counts_on, prior_summary, read_tokenizer_prior,
                                        save_tokenizer_prior, with_prior_section)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [e.name for e in registry.entries("tokenizer") if e.checkpoint and e.available]


def test_entropy_package_imports_no_registry_data_or_tokenizers():
    """The low-level entropy package is pure maths: it must not reach up to the registry, the dataset,
    the tokenizers, the app or the evaluation code (read with ``ast``, lazy imports included)."""
    high = ("registry", "data", "tokenizers", "app", "eval", "evaluate", "rd", "bench", "zoo", "train", "cli")
    for f in sorted((ROOT / "museumtok" / "entropy").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
                if node.level == 2 and not node.module:          # from .. import registry
                    mods = [a.name for a in node.names]
                elif node.level == 0:
                    mods = [m.removeprefix("museumtok.") for m in mods if m.startswith("museumtok")]
                elif node.level != 2:
                    continue                                     # from .coding import ...: inside entropy/
            elif isinstance(node, ast.Import):
                mods = [a.name.removeprefix("museumtok.") for a in node.names if a.name.startswith("museumtok")]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] not in high, f"{f.name} imports {m}"


def test_priors_round_trip_through_their_file(tmp_path):
    g = np.random.default_rng(0)
    K = 50
    p = g.dirichlet(np.full(K, 0.3))
    priors = {M: UnigramPrior.fit(g.choice(K, size=40 * M, p=p), K) for M in (16, 64)}
    path = save_priors(tmp_path / "prior.json", priors, split="toy", images=40)
    back, meta = load_priors(path)
    assert meta["split"] == "toy" and meta["K"] == K and meta["images"] == 40 and set(back) == {16, 64}
    for M, prior in priors.items():
        assert np.array_equal(back[M].counts, prior.counts) and np.array_equal(back[M].table, prior.table)
        idx = g.choice(K, size=M, p=p)
        data = back[M].encode(idx)
        assert np.array_equal(back[M].decode(data, M), idx)
        assert back[M].bits(idx) == prior.bits(idx)
    doc = json.loads(path.read_text())
    assert all(len(c) == K and all(isinstance(v, int) for v in c) for c in doc["counts"].values())
    doc["format"] = "something-else"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="format"):
        load_priors(tmp_path / "bad.json")


def test_card_section_is_added_once_and_replaced():
    card = "# tok\n\nbody\n"
    once = with_prior_section(card, "first")
    twice = with_prior_section(once, "second")
    assert twice.count("## Entropy-coding prior") == 1 and "second" in twice and "first" not in twice
    assert twice.startswith("# tok\n\nbody\n")
    assert with_prior_section(twice, None).rstrip() == card.rstrip()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_checkpoints_carry_a_prior_for_every_M(name):
    entry = registry.get(name)
    path = entry.checkpoint_path / PRIOR_FILE
    assert path.is_file(), f"{name}: run `museumtok prior fit {name}`"
    priors, meta = load_priors(path)
    assert tuple(sorted(priors)) == tuple(entry.supported_M) and meta["split"] == "artworks-train"
    n = meta["images"]
    assert n > 0 and all(int(p.counts.sum()) == n * M for M, p in priors.items())
    assert path.stat().st_size <= 256 * 1024, "counts only: K integers per M"
    assert "## Entropy-coding prior" in (entry.checkpoint_path / "README.md").read_text(encoding="utf-8")
    tok = registry.load(name)
    assert set(tok.priors) == set(priors)


@pytest.mark.parametrize("name", BUNDLED)
def test_bits_coded_is_the_range_coders_real_size(name, artwork_path):
    tok = registry.load(name)
    M = tok.default_M
    t = tok.encode(artwork_path, M)
    assert t.bits_coded is not None and t.bits == t.bits_coded
    data = tok.priors[M].encode(t.indices)
    assert np.array_equal(tok.priors[M].decode(data, M), t.flat().numpy())
    # the ideal code length under the integer table; the real stream adds the coder's flush (≤ 64 bits)
    assert abs(8 * len(data) - t.bits_coded) <= 0.01 * t.bits_coded + 64
    assert t.bits_coded == pytest.approx(tok.entropy_bits(t.indices))


def test_a_tokenizer_without_prior_says_so():
    from museumtok.tokenizers.lloyd_patch import LloydPatchTokenizer

    tok = LloydPatchTokenizer(K=16, sizes=(64,))
    assert tok.priors == {} and tok.entropy_bits(torch.zeros(8, 8, dtype=torch.long)) is None
    t = tok.encode(torch.rand(3, 64, 64), 64)
    assert t.bits_coded is None and t.bits == t.bits_raw == 64 * 4


def test_saving_a_prior_matches_a_fresh_fit_and_updates_the_card(tmp_path, data_available):
    src = registry.get("lloyd-patch-k256").checkpoint_path
    for f in ("config.json", "model.safetensors", "README.md"):
        shutil.copy(src / f, tmp_path / f)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(with_prior_section(card, None), encoding="utf-8")
    tok = type(registry.load("lloyd-patch-k256")).from_pretrained(tmp_path)
    assert read_tokenizer_prior(tmp_path) == {}
    path = save_tokenizer_prior(tok, tmp_path)
    priors = read_tokenizer_prior(tmp_path)
    assert path.name == PRIOR_FILE and set(priors) == set(tok.supported_M) and set(tok.priors) == set(priors)
    assert np.array_equal(priors[64].counts, code_counts_on(tok, 64))          # the counts of artworks-train
    bundled = read_tokenizer_prior(src)
    assert all(np.array_equal(priors[M].counts, bundled[M].counts) for M in priors)  # same weights, same counts
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert text.count("## Entropy-coding prior") == 1 and prior_summary(tmp_path) in text
    assert text.startswith(card.split("## Entropy-coding prior")[0].rstrip()[:200])


def test_cli_refuses_what_is_not_a_bundled_tokenizer(capsys):
    from museumtok.cli import main

    assert main(["prior", "fit", "jpeg"]) == 2
    assert "not a tokenizer" in capsys.readouterr().err
