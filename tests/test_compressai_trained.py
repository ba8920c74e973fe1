"""CompressAI's own ScaleHyperprior trained by our harness (issue 21's like-for-like comparison): the trainer,
the checkpoint folder (config.json naming its class + safetensors) and `eval rd --extra`."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("compressai")


def test_a_trained_compressai_model_round_trips_through_its_folder(tmp_path):
    import museumtok
    from museumtok.codecs.compressai_zoo import CompressAITrained

    torch.manual_seed(0)
    c = CompressAITrained(N=16, M=24, lmbda=0.0035, quality=2)
    c.net.update(force=True)
    c.save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (cfg["_class_name"], cfg["N"], cfg["M"], cfg["lmbda"]) == ("CompressAITrained", 16, 24, 0.0035)
    loaded = museumtok.load(str(tmp_path / "c"))                 # a local folder, through the class table
    assert isinstance(loaded, CompressAITrained)
    x = torch.rand(3, 70, 90)
    enc = loaded.compress(x)
    assert enc.data == c.compress(x).data                        # same weights, same CDF tables, same bytes
    y = loaded.decompress(enc)
    assert y.shape == x.shape and torch.equal(y, c.decompress(enc))


def test_the_trainer_trains_compressai_hyperprior_with_its_aux_loss(tmp_path, data_available):
    from museumtok.train.neural_codecs import NeuralCodecConfig, build, train_codec

    cfg = NeuralCodecConfig(N=16, M=24, crop=64, batch=2, max_steps=3, warmup_steps=1, eval_limit=1, clock="cpu",
                            out=str(tmp_path / "cai"))
    q0 = build("compressai-hyperprior", cfg, 0.0067).entropy_bottleneck.quantiles.detach().clone()
    out = train_codec("compressai-hyperprior", cfg, "test")
    import museumtok

    codec = museumtok.load(str(out))
    assert not torch.equal(codec.net.entropy_bottleneck.quantiles, q0)       # the aux optimizer moved them
    facts = json.loads((out / "training.json").read_text())
    assert facts["lineage"][-1]["steps"] == 3 and facts["stopped_by"] == "steps" and facts["cpu_time_s"] > 0
    assert "CompressAI's own `ScaleHyperprior`" in (out / "README.md").read_text()

    from museumtok.eval.rd import run_rd

    res = run_rd("kodak", 1, codecs=[], tokenizers=[], jpeg_qualities=(10, 50), webp_qualities=(10, 50),
                 extra=[str(out)])
    (pt,) = res["curves"]["cai"]["points"]
    assert res["curves"]["cai"]["kind"] == "learned" and pt["bytes"] > 0 and pt["params"]["lmbda"] == 0.0067


def test_hyperprior_decoder_input_in_training():
    """`decoder_input`: g_s reads round(y) (straight-through, our default) or the noisy ỹ (CompressAI's); the same at
    inference, and saved in config.json."""
    from museumtok.codecs.learned import ScaleHyperprior

    x = torch.rand(1, 3, 64, 64)
    for mode in ("ste", "noise"):
        torch.manual_seed(0)
        net = ScaleHyperprior(16, 24, decoder_input=mode).train()
        out = net(x)
        want = net.g_s(torch.round(out["y"]) if mode == "ste" else out["y_hat"])
        torch.testing.assert_close(out["x_hat"], want)
        assert not torch.equal(out["y_hat"], torch.round(out["y"]))        # ỹ is y + noise in training
        assert net.config_dict()["decoder_input"] == mode
    with pytest.raises(ValueError, match="decoder_input"):
        ScaleHyperprior(16, 24, decoder_input="round")
