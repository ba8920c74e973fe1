"""``museumtok train sft`` end to end on a tiny random Llama: the trainer runs on the harness, stops cleanly,
resumes exactly where it stopped (same adapter as an unbroken run) and keeps only the trained tensors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("data_available")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):          # the resume state lives under the cache: keep it out of the user's
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from museumtok.llm.sft import tiny_llama

    d = tmp_path_factory.mktemp("tiny-llama")
    model, hf_tok = tiny_llama(hidden=32, layers=2)
    model.save_pretrained(d)
    hf_tok.save_pretrained(d)
    return d


def _train(tiny_dir, out, steps, resume=False, M=64, **kw):
    from museumtok.train.sft import SFTConfig, state_dir, train

    cfg = SFTConfig(tokenizer="lloyd-patch-k256", llm=f"hf:{tiny_dir}", M=M, r=4, alpha=8, batch=2, steps=steps,
                    warmup=2, pool_crops=8, turns=1, save_every=2, bf16=False, threads=1, out=str(out),
                    resume=resume, **kw)
    path = train(cfg, command="test")
    return path, state_dir(out.resolve().as_posix().strip("/").replace("/", "_"))


def _tensors(folder):
    return {**load_file(folder / "adapter_model.safetensors"), **load_file(folder / "image_rows.safetensors")}


def test_sft_resumes_exactly_and_saves_only_what_trains(tiny_dir, tmp_path):
    whole, _ = _train(tiny_dir, tmp_path / "whole", steps=4)
    _, sdir = _train(tiny_dir, tmp_path / "split", steps=4, stop_after=2)
    saved = load_file(sdir / "state" / "model.safetensors")
    assert saved and all("lora_" in k or k.startswith("image_rows.") for k in saved)   # not the frozen LLM
    split, _ = _train(tiny_dir, tmp_path / "split", steps=4, resume=True)
    a, b = _tensors(whole), _tensors(split)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    progress = json.loads((sdir / "progress.json").read_text())
    assert [(g["start_step"], g["end_step"]) for g in progress["segments"]] == [(0, 2), (2, 4)]
    assert len(json.loads((split / "losses.json").read_text())) == 4          # the loss of every step, both segments
    assert json.loads((whole / "losses.json").read_text()) == pytest.approx(
        json.loads((split / "losses.json").read_text()), abs=2e-4)


def test_sft_resume_without_state_says_so(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved state"):
        _train(tiny_dir, tmp_path / "never", steps=2, resume=True)


def test_sft_refuses_an_m_the_tokenizer_does_not_give(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="gives M in"):
        _train(tiny_dir, tmp_path / "m", steps=1, M=17)


def test_sft_resumes_a_state_written_before_the_harness(tiny_dir, tmp_path):
    """The earlier layout (optimizer.safetensors + optimizer.json beside progress.json with every loss) is
    migrated into the harness's state folder on --resume and continues as an unbroken run would."""
    import shutil

    from safetensors.torch import save_file

    whole, _ = _train(tiny_dir, tmp_path / "whole", steps=4)
    _, sdir = _train(tiny_dir, tmp_path / "old", steps=4, stop_after=2)
    opt = load_file(sdir / "state" / "optimizer.safetensors")
    opt.pop("__torch_rng__")
    meta = json.loads((sdir / "state" / "state.json").read_text())
    save_file(opt, sdir / "optimizer.safetensors")
    (sdir / "optimizer.json").write_text(json.dumps({"param_groups": meta["param_groups"], "scalars": meta["scalars"]}))
    progress = json.loads((sdir / "progress.json").read_text())
    progress["losses"] = json.loads((whole / "losses.json").read_text())[:2]
    (sdir / "progress.json").write_text(json.dumps(progress))
    shutil.rmtree(sdir / "state")
    for f in ("train_log.csv", "eval_log.csv", "log.jsonl"):
        (sdir / f).unlink(missing_ok=True)
    resumed, _ = _train(tiny_dir, tmp_path / "old", steps=4, resume=True)
    a, b = _tensors(whole), _tensors(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert not (sdir / "optimizer.json").exists() and (sdir / "state" / "state.json").is_file()
    assert len(json.loads((resumed / "losses.json").read_text())) == 4
