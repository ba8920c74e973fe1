"""The §7.1 data-mix knob of the SFT data builder (train.sft ``--mix``): parsing, the sampled batches follow
the shares, a single-source mix draws exactly the batches of earlier runs, and no source overlaps the
images ``museumtok eval chat`` asks about."""
from __future__ import annotations

import hashlib
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from museumtok.llm import guide as G
from museumtok.train.sft import (MIX_SOURCES, SKIMAGE_SOURCES, Crop, SFTConfig, draw_batch, mix_description,
                                 parse_mix)


def test_parse_mix():
    assert parse_mix("artworks=1") == {"artworks": 1.0}
    m = parse_mix("artworks=3, photos=1 ,documents=0")
    assert m == pytest.approx({"artworks": 0.75, "photos": 0.25}) and "documents" not in m
    assert parse_mix("artworks,photos") == {"artworks": 0.5, "photos": 0.5}
    for bad in ("paintings=1", "artworks=-1", "artworks=0", "artworks=x", "artworks=1,artworks=2", ""):
        with pytest.raises(ValueError):
            parse_mix(bad)
    d = mix_description("artworks=0.8,documents=0.2")
    assert "artworks 80%" in d and "documents 20%" in d and MIX_SOURCES["documents"] in d


def _pools():
    def crop(entry, seed):
        x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed))
        return Crop(entry, torch.zeros(2, 2, dtype=torch.long), G.visual_facts(x))

    work = SimpleNamespace(title="A Work", artist="A Painter", year="1900", medium="Oil on canvas", id="w")
    return {"artworks": [crop(work, i) for i in range(5)], "photos": [crop(None, 10 + i) for i in range(4)],
            "documents": [crop(None, 20 + i) for i in range(2)]}


def test_sampled_batches_follow_the_mix():
    pools = _pools()
    cfg = SFTConfig(mix="artworks=0.6,photos=0.3,documents=0.1", batch=8, seed=3)
    draws = [d for step in range(1, 501) for d in draw_batch(cfg, pools, step)]
    n = len(draws)
    for name, p in parse_mix(cfg.mix).items():
        k = sum(d.source == name for d in draws)
        assert abs(k - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (name, k, n * p)       # binomial, 4 σ
    # each dialogue's crop comes from its source's pool; images in no catalog never get a card
    assert all(any(d.crop is c for c in pools[d.source]) for d in draws)
    assert all(d.card is None for d in draws if d.source != "artworks")
    assert any(d.card is not None for d in draws if d.source == "artworks")
    # a pure function of (seed, step)
    assert [d.source for d in draw_batch(cfg, pools, 7)] == [d.source for d in draw_batch(cfg, pools, 7)]
    with pytest.raises(ValueError, match="no crops"):
        draw_batch(cfg, {"artworks": pools["artworks"]}, 1)


def test_the_default_mix_draws_the_batches_of_earlier_runs():
    """artworks=1 draws no source: the step's RNG is consumed exactly as before the knob existed, so a run
    resumed across the change sees the same dialogues."""
    pool = _pools()["artworks"]
    cfg = SFTConfig(batch=6, seed=1)
    for step in (1, 2, 50):
        rng = random.Random(cfg.seed * 1_000_003 + step)             # the loop of the version before --mix
        old = []
        for _ in range(cfg.batch):
            c = pool[rng.randrange(len(pool))]
            card = G.Card.of(c.entry) if rng.random() < cfg.card_frac else None
            seen = rng.random() >= cfg.no_image_frac
            old.append((c, card, seen, G.sample_dialogue(rng, c.facts if seen else None, card, cfg.turns, cfg.vi_share)))
        new = draw_batch(cfg, pool, step)
        assert [(d.crop, d.card, d.seen, d.turns) for d in new] == old


def _digest(img) -> str:
    a = np.asarray(img.convert("RGB"))
    return hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()


def test_no_mix_source_is_an_image_the_chat_evaluation_uses():
    import skimage.data as skd

    from museumtok.eval.chat import OTHER_IMAGES
    from museumtok.train.sft import skimage_images

    names = {n for v in SKIMAGE_SOURCES.values() for n in v}
    assert not names & set(OTHER_IMAGES)
    eval_digests = set()
    for name in OTHER_IMAGES:
        a = np.asarray(getattr(skd, name)())
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a
        from PIL import Image
        eval_digests.add(_digest(Image.fromarray(a[..., :3].astype("uint8"))))
    for source in SKIMAGE_SOURCES:
        imgs = skimage_images(source)
        assert len(imgs) == len(SKIMAGE_SOURCES[source]) and all(min(i.size) >= 128 for i in imgs)
        assert not {_digest(i) for i in imgs} & eval_digests, source
    # the artworks source is the TRAIN split; the evaluation asks about the TEST split
    import inspect

    from museumtok.train import sft
    assert inspect.signature(sft.crop_pool).parameters["split"].default == "train"


def test_scikit_image_sources_are_tokenized_into_pools():
    import museumtok
    from museumtok.train.sft import crop_pool, source_pools

    tok = museumtok.load("lloyd-patch-k256")
    pool = crop_pool(tok, 64, 3, seed=0, source="documents")
    assert len(pool) == 3 and all(c.entry is None and c.indices.numel() == 64 for c in pool)
    assert set(pool[0].facts) >= {"colour", "brightness", "light"}
    cfg = SFTConfig(tokenizer="lloyd-patch-k256", mix="photos=0.5,documents=0.5", pool_crops=4)
    pools = source_pools(cfg, tok)
    assert set(pools) == {"photos", "documents"} and all(len(p) == 64 for p in pools.values())   # at least 64 each
    assert {d.source for s in range(1, 6) for d in draw_batch(cfg, pools, s)} == {"photos", "documents"}
