"""The learned-codec trainer (§5.1–5.2): precision choice, learning-rate warm-up on a restart from a
checkpoint, and the lineage that makes a continued checkpoint's card state its whole training."""
import json

import torch

from museumtok.train.neural_codecs import NeuralCodecConfig, rd_loss, training_lineage, use_bf16


def test_bf16_defaults_to_what_the_cpu_computes_natively():
    assert NeuralCodecConfig().bf16 is None
    assert use_bf16(True) is True and use_bf16(False) is False
    assert use_bf16(None) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _adam_steps(net, x, lr_of_step, n=2):
    opt = torch.optim.Adam(net.parameters(), lr=1.0)
    for step in range(n):
        for g in opt.param_groups:
            g["lr"] = lr_of_step(step)
        loss = rd_loss(net(x), x, net.cfg.lmbda)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_warm_up_keeps_a_trained_checkpoint_that_plain_adam_restarts_wreck(data_available):
    # Adam's first updates are ±lr on every weight whatever the gradient's size: restarting a trained
    # codec at full lr undoes it; the trainer's linear warm-up (lr·(step+1)/warmup) does not
    from museumtok.data.images import load_image, pil_to_tensor
    from museumtok.data.catalog import named_set
    from museumtok.codecs.learned import ScaleHyperprior
    from museumtok.paths import CHECKPOINT_DIR

    torch.set_num_threads(1)
    x = pil_to_tensor(load_image(named_set("kodak")[0].find()).image)[None, :, :128, :128]   # (1, 3, 128, 128)

    def psnr_after(lr_of_step):
        torch.manual_seed(0)
        net = ScaleHyperprior.from_pretrained(CHECKPOINT_DIR / "hyperprior-q3").train()
        _adam_steps(net, x, lr_of_step)
        net.eval()
        with torch.no_grad():
            return float(rd_loss(net(x), x, net.cfg.lmbda)["psnr"])

    cfg = NeuralCodecConfig()
    before = psnr_after(lambda s: 0.0)
    warm = psnr_after(lambda s: 1e-3 * (s + 1) / cfg.warmup_steps)
    cold = psnr_after(lambda s: 1e-3)
    assert abs(warm - before) < 0.5
    # how far a cold restart falls depends on the checkpoint (2.4 dB for hyperprior-q3 after its second round
    # with the lower bound, > 3 dB before): at least 1.5 dB, and several times what the warm-up loses
    assert cold < before - 1.5 and before - cold > 4 * max(before - warm, 0.1)


def test_lineage_follows_the_init_chain_and_prefers_the_stored_one(tmp_path):
    def write(name, steps, wall, init=None, lineage=None):
        d = tmp_path / name
        d.mkdir()
        text = (f"initialised from `{tmp_path / init}` (51 tensors copied), then " if init else "") + f"{steps} Adam steps of batch 8"
        facts = {"name": name, "steps": text, "wall_time_s": wall, "command": f"train {name}", "hardware": "cpu"}
        if lineage is not None:
            facts["lineage"] = lineage
        (d / "training.json").write_text(json.dumps(facts))
        return d

    write("base", 4967, 1200.0)
    write("fine", 2279, 660.0, init="base")
    chain = training_lineage(write("finer", 892, 600.0, init="fine"))
    assert [(r["checkpoint"], r["steps"], r["wall_time_s"]) for r in chain] == [
        ("base", 4967, 1200.0), ("fine", 2279, 660.0), ("finer", 892, 600.0)]
    # a stored lineage wins: the checkpoints it names may since have been overwritten by later runs
    stored = [{"checkpoint": "old", "steps": 10, "wall_time_s": 1.0, "command": "x", "hardware": "cpu"}]
    assert training_lineage(write("kept", 5, 1.0, init="base", lineage=stored)) == stored
    # a run that continued a checkpoint in place does not loop
    assert len(training_lineage(write("self", 7, 2.0, init="self"))) == 1
    assert training_lineage(tmp_path / "missing")[0]["steps"] is None
