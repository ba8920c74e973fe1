"""VQ-VAE and dVAE models (§4.3–4.4): shapes, checkpoints, the tokenizer contract, training and resume."""
import random

import pytest
import torch
from PIL import Image

from museumtok.models import DVAE, VQVAE, DVAEConfig, VQVAEConfig
from museumtok.models.layers import Encoder, level_channels
from museumtok.tokenizers.autoencoder import AutoencoderTokenizer, DVAETokenizer, VQVAETokenizer

TINY = dict(channels=(8, 16, 16), codebook_size=32, dim=8)


def _models(f=8):
    torch.manual_seed(0)
    return [VQVAE(VQVAEConfig(f=f, restart_dead_after=5, **TINY)), DVAE(DVAEConfig(f=f, **TINY))]


@pytest.mark.parametrize("f", [4, 8, 16])
def test_shapes_for_each_downsampling_factor(f):
    x = torch.rand(2, 3, 64, 64)
    for m in _models(f):
        out = m(x)
        h = 64 // f
        assert out.x_hat.shape == x.shape
        assert out.quant.indices.shape == (2, h, h) and out.quant.indices.dtype == torch.long
        assert out.quant.z_q.shape == (2, 8, h, h)
        assert out.loss.ndim == 0 and "recon" in out.losses
        # total = reconstruction + the quantizer's own weighted sum (its `losses` are unweighted)
        assert torch.allclose(out.loss, out.losses["recon"] + out.quant.loss)


def test_bad_factor_and_size_are_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        Encoder(f=6)
    with pytest.raises(ValueError, match="multiples of f=8"):
        _models(8)[0](torch.rand(1, 3, 60, 60))
    assert level_channels(16, (8, 16)) == [8, 16, 16, 16, 16]


@pytest.mark.parametrize("cls", [VQVAETokenizer, DVAETokenizer])
def test_save_from_pretrained_round_trip(cls, tmp_path):
    m = _models()[0 if cls is VQVAETokenizer else 1]
    m.train()
    m(torch.rand(4, 3, 32, 32))  # one training pass: k-means init / EMA buffers change
    m.eval()
    cls(m).save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors"}
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt")), "no pickles"
    tok = cls.from_pretrained(tmp_path)
    assert tok.model.config == m.config
    sd, sd2 = m.state_dict(), tok.model.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(tok.encode_tensor(x), cls(m).encode_tensor(x))


def test_generic_autoencoder_tokenizer_takes_the_model_class(tmp_path):
    """The one generic class loads any family given its model class; the named ones only fix it."""
    m = _models()[1]                                                      # a dVAE
    DVAETokenizer(m).save_pretrained(tmp_path)
    tok = AutoencoderTokenizer.from_pretrained(tmp_path, model_cls=DVAE)
    assert type(tok.model) is DVAE and tok.model.config == m.config
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(tok.encode_tensor(x), DVAETokenizer.from_pretrained(tmp_path).encode_tensor(x))
    with pytest.raises(TypeError, match="model_cls"):
        AutoencoderTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("cls", [VQVAETokenizer, DVAETokenizer])
def test_encode_decode_contract(cls):
    m = _models()[0 if cls is VQVAETokenizer else 1]
    tok = cls(m)
    assert tok.supported_M == (64, 256, 1024) and tok.K == 32
    assert [tok.working_size(M) for M in tok.supported_M] == [64, 128, 256]
    x = torch.rand(2, 3, 128, 128)
    idx = tok.encode_tensor(x, 256)
    assert idx.shape == (2, 16, 16) and idx.dtype == torch.long and 0 <= idx.min() and idx.max() < 32
    assert torch.equal(idx, tok.encode_tensor(x, 256)), "deterministic (no Gumbel noise, no EMA update)"
    x_hat = tok.decode_indices(idx, 256)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    # decoding the codes of the indices is what the model does with its own quantized grid
    m.eval()
    q = m.quantize(m.encode(x))
    assert torch.allclose(m.decode(q.z_q).clamp(0, 1), x_hat, atol=1e-5)
    with pytest.raises(ValueError, match="multiples"):
        cls(m, sizes=(60,))


@pytest.mark.parametrize("which", [0, 1])
def test_a_few_steps_reduce_the_loss_on_a_tiny_batch(which):
    m = _models()[which]
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=32, mode="bilinear")  # smooth
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        out = m(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.losses["recon"].detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def _synthetic_images(n=3):
    rng = random.Random(0)
    return [Image.new("RGB", (48 + 8 * i, 40), tuple(rng.randrange(256) for _ in range(3))) for i in range(n)]


@pytest.mark.parametrize("trainer", ["vqvae", "dvae"])
def test_resume_gives_identical_state(trainer, tmp_path):
    from museumtok.train import dvae as tdvae
    from museumtok.train import vqvae as tvq
    from museumtok.train.autoencoder import RunLog, fit

    mod = tvq if trainer == "vqvae" else tdvae
    cfg_cls = mod.VQVAETrainConfig if trainer == "vqvae" else mod.DVAETrainConfig
    cfg = cfg_cls(channels=(8, 16, 16, 16), codebook_size=16, dim=4, steps=6, batch_size=2, crop=32, warmup=2,
                  log_every=1, eval_every=2, save_every=2, max_minutes=0, restart_dead_after=2) \
        if trainer == "vqvae" else cfg_cls(channels=(8, 16, 16, 16), codebook_size=16, dim=4, steps=6,
                                           batch_size=2, crop=32, warmup=2, log_every=1, eval_every=2,
                                           save_every=2, max_minutes=0)
    model_cls = VQVAE if trainer == "vqvae" else DVAE
    schedule = None
    if trainer == "dvae":
        def schedule(m, step):
            m.tau = tdvae.tau_at(step, cfg.steps, cfg.tau_start, cfg.tau_end, cfg.tau_anneal)
            return {"tau": m.tau}
    images = _synthetic_images()
    x_val = torch.rand(2, 3, 32, 32)

    def fresh():
        torch.manual_seed(0)
        return model_cls(cfg.model)

    a = fresh()
    fit(a, cfg, images, tmp_path / "a", x_val=x_val, on_step=schedule, progress=False)
    b = fresh()
    r1 = fit(b, cfg, images, tmp_path / "b", x_val=x_val, on_step=schedule, progress=False, stop_after=3)
    assert r1["steps"] == 3 and r1["stopped_by"] == "stop_after"
    torch.manual_seed(123)  # a new process: the global RNG is whatever it is; the state restores it
    c = fresh()
    r2 = fit(c, cfg, images, tmp_path / "b", x_val=x_val, on_step=schedule, progress=False)
    assert r2["resumed_from"] == 3 and r2["steps"] == 6
    sa, sc = a.state_dict(), c.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sc[k]), f"{k} differs after resume"
    la, lb = RunLog(tmp_path / "a").rows("train"), RunLog(tmp_path / "b").rows("train")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert [int(r["step"]) for r in RunLog(tmp_path / "b").rows("eval")] == [2, 4, 6]


def test_compare_relaxations_trains_soft_and_straight_through_alike(tmp_path):
    """§4.4: the same dVAE, seed, crops, steps and τ schedule, once on the soft sample (the default) and once
    straight-through; both report the codebook's usage/perplexity and the tokens' and the relaxed PSNR."""
    from museumtok.train.dvae import DVAETrainConfig, compare_relaxations, relaxed_psnr

    assert DVAEConfig().hard is False and DVAETrainConfig().model.hard is False  # DALL·E trains on the relaxed sample
    cfg = DVAETrainConfig(f=4, channels=(8, 16, 16), codebook_size=16, dim=4, steps=4, batch_size=2, crop=16,
                          warmup=1, log_every=1, eval_every=2, save_every=10**9, max_minutes=0)
    x_val = torch.rand(2, 3, 16, 16)
    res = compare_relaxations(cfg, _synthetic_images(), x_val, tmp_path)
    assert list(res) == ["soft", "straight-through"]
    soft, st = res["soft"], res["straight-through"]
    assert soft["model"].config.hard is False and st["model"].config.hard is True
    assert [r["step"] for r in soft["train"]] == [r["step"] for r in st["train"]] == ["1", "2", "3", "4"]
    assert [int(r["step"]) for r in soft["eval"]] == [2, 4]
    for r in (soft, st):
        f = r["final"]
        assert 0 < f["usage"] <= 1 and 1 <= f["perplexity"] <= 16 and f["dead_codes"] == round(16 * (1 - f["usage"]))
        assert r["relaxed_psnr"] > 0 and f["psnr"] > 0
        assert r["model"].tau == pytest.approx(cfg.tau_end)                      # evaluated at the final τ
    # the same first batch from the same initial weights: the first losses differ only by the forward pass
    assert soft["train"][0]["loss"] != st["train"][0]["loss"]
    assert relaxed_psnr(soft["model"], x_val, seed=1) == relaxed_psnr(soft["model"], x_val, seed=1)  # seeded


def test_tau_schedule_and_trainers_registered():
    from museumtok.train import load_trainers
    from museumtok.train.dvae import tau_at

    assert tau_at(0, 100, 1.0, 1 / 16, 0.5) == 1.0
    assert tau_at(25, 100, 1.0, 1 / 16, 0.5) == pytest.approx(0.25)
    assert tau_at(50, 100, 1.0, 1 / 16, 0.5) == pytest.approx(1 / 16) == tau_at(99, 100, 1.0, 1 / 16, 0.5)
    assert {"vqvae", "dvae"} <= set(load_trainers())


def test_restricted_encoding_uses_only_the_allowed_codes():
    m = _models()[0].eval()
    x = torch.rand(2, 3, 64, 64)
    keep = torch.tensor([3, 7, 11])
    k = m.encode_indices_restricted(x, keep)
    assert k.shape == (2, 8, 8) and set(k.unique().tolist()) <= {3, 7, 11}
    assert torch.equal(m.encode_indices_restricted(x, torch.arange(32)), m.encode_indices(x))
    # each position takes the nearest allowed code
    z = m.encode(x).permute(0, 2, 3, 1).reshape(-1, 8)
    d = torch.cdist(z, m.quantizer.codebook[keep])
    assert torch.equal(keep[d.argmin(1)], k.reshape(-1))


@pytest.mark.parametrize("trainer,cls", [("vqvae", VQVAETokenizer), ("dvae", DVAETokenizer)])
def test_train_command_writes_a_loadable_checkpoint_with_card(trainer, cls, tmp_path, data_available):
    import json

    from museumtok.cli import main

    out, run = tmp_path / "ckpt", tmp_path / "run"
    rc = main(["train", trainer, "--channels", "8,16,16,16", "--codebook-size", "16", "--dim", "4", "--steps", "3",
               "--batch-size", "2", "--warmup", "1", "--log-every", "1", "--eval-every", "2", "--eval-size", "64",
               "--final-eval-sets", "artworks-val", "--out", str(out), "--run-dir", str(run), "--threads", "1"])
    assert rc == 0
    tok = cls.from_pretrained(out)
    assert tok.K == 16 and tok.supported_M == (64, 256, 1024)
    card = (out / "README.md").read_text()
    assert "arXiv:" in card and "3 steps" in card and "artworks-val" in card
    facts = json.loads((out / "training.json").read_text())
    assert [m["M"] for m in facts["metrics"]] == [64, 256, 1024]
    assert all(0 < m["psnr"] < 60 and 0 < m["usage"] <= 1 for m in facts["metrics"])
    assert (out / "eval_log.csv").read_text().splitlines()[0].startswith("step,wall_s,psnr,usage,perplexity")
    from museumtok.tokenizers.prior import read_tokenizer_prior   # the trainer saved the entropy-coding prior

    assert set(read_tokenizer_prior(out)) == {64, 256, 1024} and "## Entropy-coding prior" in (out / "README.md").read_text()


def test_multi_term_objective_trains_a_vqvae_and_logs_its_terms(tmp_path):
    """§7.2 in a trainer: ``--objective multi-term`` optimises MultiTermLoss's total (rate under the EMA code
    usage, L1, 1 − MS-SSIM, the VQ terms), logs each term and the hard bits, and refuses terms it cannot train."""
    from museumtok.losses import ema_usage_logits
    from museumtok.train.autoencoder import RunLog, fit
    from museumtok.train.vqvae import VQVAETrainConfig, multi_term_objective

    cfg = VQVAETrainConfig(channels=(8, 16, 16, 16), codebook_size=16, dim=4, steps=3, batch_size=2, crop=32,
                           warmup=1, log_every=1, eval_every=3, save_every=10, max_minutes=0,
                           objective="multi-term", lambda_perc=0.5, rate_weight=0.1, tau=0.5)
    assert cfg.multi.lambda_perc == 0.5 and cfg.multi.rate == "soft" and cfg.multi.lambda_gan == 0.0
    torch.manual_seed(0)
    model = VQVAE(cfg.model)
    fn = multi_term_objective(cfg.multi)
    fit(model, cfg, _synthetic_images(), tmp_path / "run", x_val=torch.rand(2, 3, 32, 32), progress=False,
        loss_fn=fn)
    rows = RunLog(tmp_path / "run").rows("train")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for r in rows:
        total = 0.1 * float(r["mt_rate"]) + float(r["mt_rec"]) + 0.5 * float(r["mt_perc"]) + float(r["mt_vq"])
        assert float(r["loss"]) == pytest.approx(total, rel=1e-4)
        assert 0 < float(r["rate_bits_per_token"]) <= 4 + 1e-6             # K = 16 codes: at most ~log2 16 bits
    # the prior is the running usage: log(N_k / (1 − γ) + ½)
    q = model.quantizer
    assert torch.allclose(ema_usage_logits(q), (q.cluster_size / (1 - q.decay) + 0.5).log())
    with pytest.raises(ValueError, match="discriminator"):
        multi_term_objective(VQVAETrainConfig(lambda_gan=0.1).multi)
