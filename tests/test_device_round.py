"""The GPU round (``python -m museumtok.train.device_round``): its jobs are valid trainer commands, the pooled
crop sampler the tokenizer job uses, and the cards it rewrites back home (metrics measured here, notes carried)."""
import json
import random

import pytest
import torch
from PIL import Image

from museumtok.cards import NO_METRICS, refresh_metrics, write_model_card
from museumtok.train.autoencoder import PooledCrops
from museumtok.train.device_round import carry_notes, compare, plan, rd_cost


def _parse(argv):
    from museumtok.cli import build_parser
    from museumtok.train import TRAINERS, config_from_args

    args = build_parser().parse_args(["train", *argv])
    return config_from_args(TRAINERS[argv[0]].config_cls, args)


def test_every_planned_job_is_a_valid_trainer_command(tmp_path):
    jobs = plan(7.0, tmp_path / "run", tmp_path / "ckpt")
    assert [j.name for j in jobs] == ["hyperprior-q1", "hyperprior-q2", "hyperprior-q3", "hyperprior-q4",
                                      "factorized-q2", "factorized-q4", "vqvae-f16-k1024"]
    by = {j.name: _parse(j.argv) for j in jobs}
    for q in (1, 2, 3, 4):
        c = by[f"hyperprior-q{q}"]
        assert (c.quality, c.crop, c.device, c.max_minutes, c.eval_limit, c.bf16) == (q, 256, "cuda", 7.0, 0, True)
        assert c.init == str(tmp_path / "ckpt" / f"hyperprior-q{q}") and c.out == str(tmp_path / "run" / f"hyperprior-q{q}")
    assert by["factorized-q4"].crop == 128 and by["factorized-q4"].init.endswith("factorized-q4")
    t = by["vqvae-f16-k1024"]
    assert (t.model.f, t.crop, t.data, t.schedule, t.model.usage_weight, t.final_eval_sets) == (
        16, 256, "pool", "progress", 0.03, ("artworks-val",))
    assert plan(1, tmp_path, tmp_path, qualities=(3,), factorized=(), tokenizer=False)[0].name == "hyperprior-q3"


def test_pooled_crops_are_a_pure_function_of_seed_and_step_and_cut_from_the_pyramid():
    rng = random.Random(0)
    imgs = [Image.frombytes("RGB", (w, h), bytes(rng.randrange(256) for _ in range(w * h * 3)))
            for w, h in ((90, 70), (64, 120))]
    pool = PooledCrops(imgs, 32, max_zoom=2.0, levels=3)
    assert [[tuple(t.shape[1:]) for t in lv] for lv in pool.pyramid] == [
        [(32, 41), (45, 58), (64, 82)], [(60, 32), (84, 45), (120, 64)]]     # short sides 32, 45, 64 (≤ the image)
    assert pool.pyramid[0][-1].dtype == torch.uint8
    a, b = pool(5, 8, seed=1), pool(5, 8, seed=1)
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, pool(6, 8, seed=1)) and not torch.equal(a, pool(5, 8, seed=2))
    assert 0 <= a.min() and a.max() <= 1
    # every crop is a window (maybe mirrored) of one pyramid level
    for c in (a * 255).round().to(torch.uint8):
        found = False
        for t in (t for lv in pool.pyramid for t in lv):
            for cand in (c, c.flip(-1)):
                win = t.unfold(1, 32, 1).unfold(2, 32, 1)                   # (3, h-31, w-31, 32, 32)
                if (win == cand[:, None, None]).all(0).all(-1).all(-1).any():
                    found = True
        assert found


def test_refresh_metrics_replaces_the_table_and_keeps_the_rest(tmp_path):
    write_model_card(tmp_path, "hyperprior-q9", summary="s", data="d", steps="st", wall_time_s=60,
                     metrics=[{"set": "artworks-val", "PSNR dB": 1.0}], command="c", extra="\nTraining history: 3 runs\n",
                     facts={"lineage": [1, 2]})
    refresh_metrics(tmp_path, [{"set": "kodak", "PSNR dB": 27.5}], note="Measured elsewhere.")
    card = (tmp_path / "README.md").read_text()
    assert "| kodak | 27.500 |" in card and "artworks-val" not in card
    assert "Measured elsewhere." in card and "Training history: 3 runs" in card
    facts = json.loads((tmp_path / "training.json").read_text())
    assert facts["metrics"] == [{"set": "kodak", "PSNR dB": 27.5}] and facts["lineage"] == [1, 2]
    # a card written without metrics (a codec run with --eval-limit 0) gets its table in place of the placeholder
    write_model_card(tmp_path, "hyperprior-q9", summary="s", data="d", steps="st", wall_time_s=60, metrics=[],
                     command="c", extra="\nafter\n")
    assert NO_METRICS in (tmp_path / "README.md").read_text()
    refresh_metrics(tmp_path, [{"set": "kodak", "PSNR dB": 27.5}])
    card = (tmp_path / "README.md").read_text()
    assert NO_METRICS not in card and "| kodak | 27.500 |" in card and "after" in card
    with pytest.raises(ValueError, match="Held-out metrics"):
        (tmp_path / "README.md").write_text("# no section\n")
        refresh_metrics(tmp_path, [])


def test_carry_notes_puts_the_new_run_on_top(tmp_path):
    old, new = tmp_path / "old.md", tmp_path / "new.md"
    old.write_text("# x\n\n## Notes\n\n- The last run of this chain (5 min, the command above; shared) was A.\n"
                   "- The run before it (3 min) was B.\n")
    new.write_text("# x\n\ncard body\n")
    carry_notes(old, new, "- The last run of this chain (GPU) is C.")
    text = new.read_text()
    assert text.index("card body") < text.index("## Notes") < text.index("is C.") < text.index("was A.")
    assert "- The run before it (5 min, an earlier command; shared) was A." in text
    assert "- An earlier run (3 min) was B." in text


def test_keep_rules():
    assert rd_cost(0.3, 28.0, 0.0067) == pytest.approx(0.3 + 0.0067 * 255**2 * 10 ** -2.8)
    row = lambda b, p: [{"set": "kodak", "bpp (real bytes)": b, "PSNR dB": p}]  # noqa: E731
    assert compare("hyperprior-q3", row(0.30, 28.7), row(0.30, 28.8), 0.0067)["keep"]
    assert not compare("factorized-q2", row(0.25, 27.4), row(0.27, 27.41), 0.0035)["keep"]
    tok = lambda p, u: [{"set": "artworks-val", "M": 256, "psnr": p, "usage": u},  # noqa: E731
                        {"set": "artworks-val", "M": 64, "psnr": 0.0, "usage": 0.0}]
    assert compare("vqvae-f16-k1024", tok(22.38, 0.874), tok(22.60, 0.880))["keep"]
    assert not compare("vqvae-f16-k1024", tok(22.38, 0.874), tok(22.60, 0.870))["keep"]


def test_stage_copies_exactly_the_splits_the_round_reads(tmp_path, data_available):
    from museumtok.data.catalog import load_catalog
    from museumtok.train.device_round import stage

    info = stage(tmp_path)
    files = {p.name for p in (tmp_path / "artworks").iterdir()}
    want = {e.file for s in ("train", "val") for e in load_catalog(split=s, collection="artworks")}
    assert files == want and info["images"] == len(want)
    assert not files & {e.file for e in load_catalog(split="test", collection="artworks")}


@pytest.mark.slow
def test_a_short_round_on_the_cpu_trains_packs_measures_and_keeps(tmp_path, data_available):
    # the whole path of a GPU round, on this CPU for a few seconds: one codec job, its tar, the measurement here
    import shutil

    from museumtok.paths import CHECKPOINT_DIR
    from museumtok.train.device_round import finish, run

    ckpt = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT_DIR / "hyperprior-q1", ckpt / "hyperprior-q1")
    s = run(0.05, tmp_path / "out", tmp_path / "root", ckpt, grace_minutes=3, device="cpu", qualities=(1,),
            factorized=(), tokenizer=False)
    assert s["jobs"] == {"hyperprior-q1": {"returncode": 0, "checkpoint": True}}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hyperprior-q1.tar", "logs.txt"]
    bundled = json.loads((ckpt / "hyperprior-q1" / "training.json").read_text())
    bundled["metrics"][0].update({"bpp (real bytes)": 9.0})          # a bundled cost no run can fail to beat
    (ckpt / "hyperprior-q1" / "training.json").write_text(json.dumps(bundled))
    (row,) = finish(tmp_path / "out", tmp_path / "home", ckpt, keep=True, limit=1)
    assert row["keep"] and row["copied"] == str(ckpt / "hyperprior-q1")
    facts = json.loads((ckpt / "hyperprior-q1" / "training.json").read_text())
    assert facts["metrics"][0]["set"] == "kodak" and facts["metrics"][0]["images"] == 1
    assert facts["lineage"][-1]["command"].startswith("museumtok train hyperprior --quality 1 --device cpu")
    card = (ckpt / "hyperprior-q1" / "README.md").read_text()
    assert card.index("## Notes") < card.index("- The last run of this chain") < card.index("- The run before it")
