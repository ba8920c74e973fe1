"""MaskGIT against its autoregressive baseline (§4.6): likelihoods, AR inpainting, the comparison tables,
and the reconstruction panel of the VQ-GAN card. Tiny random models; no timing assertions."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from museumtok.eval.generative import (ComparisonConfig, box_psnr, compare_decodings, held_out_crops,
                                           inpainting_rows, likelihood_rows, markdown, mean_se,
                                           pairwise_disagreement)
from museumtok.models.maskgit import MaskGIT, MaskGITConfig, box_region, masked_counts

torch.set_num_threads(1)

TINY = dict(codebook_size=3, grid=(2, 2), dim=16, depth=1, heads=2, dropout=0.0)
MG = dict(codebook_size=16, grid=(4, 4), dim=16, depth=1, heads=2, dropout=0.0)


def _models(cfg, seed=0):
    torch.manual_seed(seed)
    return MaskGIT(MaskGITConfig(**cfg)).eval(), MaskGIT(MaskGITConfig(**cfg, causal=True)).eval()


@pytest.mark.parametrize("causal,kw", [(True, {}), (False, {"order": "raster"}), (False, {"order": "confidence"}),
                                       (False, {"order": "raster", "steps": 2}),
                                       (False, {"order": "confidence", "steps": 3})])
def test_chain_rule_likelihood_is_a_distribution_by_enumeration(causal, kw):
    mg, ar = _models(TINY)
    model = ar if causal else mg
    grids = torch.tensor(list(itertools.product(range(3), repeat=4)))   # all 3^4 = 81 grids of 2×2
    lp = model.chain_rule_log_probs(grids, **kw)                         # (81, 4)
    assert lp.shape == (81, 4) and (lp <= 0).all()
    assert lp.sum(1).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    # not the trivial uniform distribution: random weights give different probabilities to different grids
    assert lp.sum(1).std() > 1e-3


@pytest.mark.parametrize("kw", [{"order": "raster"}, {"order": "confidence"}, {"order": "raster", "steps": 1}])
def test_conditional_likelihood_of_a_box_is_a_distribution(kw):
    """log p(box | the rest) sums to 1 over every filling of the box, for any context."""
    mg, _ = _models(TINY)
    fill = torch.tensor(list(itertools.product(range(3), repeat=2)))        # all 9 fillings of 2 positions
    for ctx in ((0, 1), (2, 2)):
        grids = torch.cat([fill, torch.tensor(ctx).expand(9, 2)], 1)       # positions 0, 1 hidden; 2, 3 given
        hide = torch.zeros(9, 4, dtype=torch.bool)
        hide[:, :2] = True
        lp = mg.chain_rule_log_probs(grids, masked=hide, **kw)
        assert (lp[:, 2:] == 0).all()
        assert lp.sum(1).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="same number"):
        bad = torch.zeros(2, 4, dtype=torch.bool)
        bad[0, 0] = True
        mg.chain_rule_log_probs(torch.zeros(2, 4, dtype=torch.long), masked=bad)


def test_ar_chain_rule_equals_teacher_forced_loss():
    _, ar = _models(MG)
    k = torch.randint(0, 16, (5, 4, 4))
    lp = ar.chain_rule_log_probs(k)
    assert ar.forward_passes == 1
    assert (-lp.mean()).item() == pytest.approx(ar.loss(k)["loss"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="raster"):
        ar.chain_rule_log_probs(k, order="confidence")


def test_maskgit_raster_chain_rule_reveals_one_token_at_a_time():
    mg, _ = _models(MG)
    k = torch.randint(0, 16, (3, 16))
    mg.forward_passes = 0
    lp = mg.chain_rule_log_probs(k, order="raster")
    assert mg.forward_passes == 16                                        # N passes
    for j in (0, 5, 15):                                                  # by hand: k_<j given, k_≥j masked
        inp = k.clone()
        inp[:, j:] = 16
        want = F.log_softmax(mg(inp)[:, j], -1).gather(1, k[:, j:j + 1])[:, 0]
        assert torch.allclose(lp[:, j], want, atol=1e-5)
    mg.forward_passes = 0
    lp8 = mg.chain_rule_log_probs(k, order="confidence", steps=8)
    assert mg.forward_passes == 8 and lp8.shape == (3, 16)
    # the first group of the T-step factorization is scored from the all-[MASK] grid, all independently
    first = 16 - masked_counts(16, 8)[0]
    blank = F.log_softmax(mg(torch.full((3, 16), 16)), -1).gather(-1, k[..., None])[..., 0]
    assert torch.isclose(lp8, blank, atol=1e-5).sum(1).ge(first).all()


def test_ar_inpainting_keeps_outside_and_sees_only_the_past():
    _, ar = _models(MG)
    k = torch.randint(0, 16, (4, 4, 4))
    box = (1, 1, 2, 2)
    region = box_region(k, box)
    ar.forward_passes = 0
    out = ar.inpaint(k, box, greedy=True)                                 # dispatches to fill_autoregressive
    assert ar.forward_passes == 4                                         # one pass per masked position
    assert torch.equal(out[~region], k[~region]) and (out < 16).all()
    # greedy by hand: raster order, each masked token the argmax of p(k_i | k_<i)
    seq = k.reshape(4, 16).clone()
    for i in torch.nonzero(region[0].flatten()).flatten().tolist():
        logits = ar(torch.cat([torch.full((4, 1), 16), seq[:, :-1]], 1))[:, i]
        seq[:, i] = logits.argmax(-1)
    assert torch.equal(out.reshape(4, 16), seq)
    # a left-to-right prior cannot use the known tokens after the box's last position (raster index 10)
    k2 = k.clone()
    k2[:, 3, :] = (k2[:, 3, :] + 1) % 16
    k2[:, 2, 3] = (k2[:, 2, 3] + 5) % 16
    out2 = ar.inpaint(k2, box, greedy=True)
    assert torch.equal(out2[region], out[region])
    with pytest.raises(ValueError, match="causal"):
        _models(MG)[0].fill_autoregressive(k, region)


def test_maskgit_greedy_decode_is_the_argmax():
    mg, _ = _models(MG)
    k = torch.randint(0, 16, (3, 16))
    one = torch.zeros(3, 16, dtype=torch.bool)
    one[:, 7] = True                                                      # a single hole: one step, argmax
    out = mg.decode(k, one, steps=4, greedy=True)
    inp = k.clone()
    inp[:, 7] = 16
    assert torch.equal(out[:, 7], mg(inp)[:, 7].argmax(-1)) and torch.equal(out[~one], k[~one])
    box = (0, 1, 3, 2)
    a = mg.inpaint(k.view(3, 4, 4), box, steps=3, greedy=True, generator=torch.Generator().manual_seed(1))
    b = mg.inpaint(k.view(3, 4, 4), box, steps=3, greedy=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)                                              # no randomness left


def test_box_psnr_and_mean_se():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0, :, 2:4, 2:4] = 0.1                                               # inside the box: mse 0.01 → 20 dB
    b[1, :, 6:, 6:] = 1.0                                                 # outside the box only
    p = box_psnr(b, a, (2, 2, 2, 2))
    assert p[0].item() == pytest.approx(20.0, rel=1e-5)
    assert p[1].item() == pytest.approx(60.0)                             # exact match: floored at 60 dB
    m, se = mean_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and se == pytest.approx(torch.tensor([1.0, 2, 3, 4]).std().item() / 2)


class _IdentityTokenizer:
    """A stand-in tokenizer with f = 2: token = quantized mean grey level of a 2×2 patch (K = 16)."""

    def encode_indices(self, x):                                          # (B, 3, H, W) -> (B, H/2, W/2)
        return (F.avg_pool2d(x.mean(1, keepdim=True), 2)[:, 0] * 15.999).long()

    def decode_indices(self, k):                                          # (B, h, w) -> (B, 3, 2h, 2w)
        return (k.float() / 15)[:, None].repeat(1, 3, 1, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)

    def eval(self):
        return self


def test_comparison_rows_on_tiny_models():
    mg, ar = _models(MG)
    ae = _IdentityTokenizer()
    x = torch.rand(6, 3, 8, 8)
    k = ae.encode_indices(x)                                              # (6, 4, 4)
    rows = likelihood_rows(mg, ar, k, steps=4)
    assert [r["forward_passes"] for r in rows] == [1, 16, 16, 4, 4]
    bits = [float(r["bits_per_token"].split(" ± ")[0]) for r in rows]
    assert all(0 < b < 20 for b in bits)
    rows = inpainting_rows(mg, ar, ae, x, k, (1, 1, 2, 2), steps=2, seed=0)
    assert rows[0]["token_accuracy"] == "1"
    passes = {r["decoder"]: r["forward_passes"] for r in rows}
    assert list(passes.values()) == [0, 2, 2, 2, 4, 4, 4]
    assert "review" in rows[1]["decoder"] and "paper" in rows[2]["decoder"]
    assert rows[1]["delta_vs_first_db"] == "0"                            # the paired Δ is to the first decoder
    for r in rows[1:]:
        acc = float(r["token_accuracy"].split(" ± ")[0])
        assert 0.0 <= acc <= 1.0
    for r in rows[2:]:                                                    # Δ = difference of the means (paired)
        d = float(r["delta_vs_first_db"].split(" ± ")[0])
        assert d == pytest.approx(float(r["psnr_vs_original_db"].split(" ± ")[0])
                                  - float(rows[1]["psnr_vs_original_db"].split(" ± ")[0]), abs=0.011)
    text = markdown({"toy": {"grids": 6, "likelihood": likelihood_rows(mg, ar, k, 4), "inpainting": rows}},
                    ComparisonConfig(crop=8, size=16, box=(1, 1, 2, 2)))
    assert "toy" in text and "bits_per_token" in text and "psnr_vs_original_db" in text


def test_compare_decodings_rows_on_tiny_models():
    mg, _ = _models(MG)
    ae = _IdentityTokenizer()
    x = torch.rand(5, 3, 8, 8)
    k = ae.encode_indices(x)
    rows = compare_decodings(mg, ae, x, k, (1, 1, 2, 2), steps=2, seeds=3, samples=2)
    assert [r["decoding"].split()[0] for r in rows] == ["true", "paper", "review"]
    for r in rows[1:]:
        bits = float(r["box_bits_per_token"].split(" ± ")[0])
        assert 0 < bits < 20
        assert 0 <= float(r["box_diversity"].split(" ± ")[0]) <= 1
        assert 0 <= float(r["sample_diversity"].split(" ± ")[0]) <= 1
    assert pairwise_disagreement(torch.tensor([[[1, 2]], [[1, 3]], [[1, 2]]])).tolist() == [pytest.approx(1 / 3)]
    with pytest.raises(ValueError, match="two seeds"):
        pairwise_disagreement(torch.zeros(1, 2, 3))


def test_held_out_crops_tile_the_image(data_available):
    x = held_out_crops("kodak", 128, 64, limit=2)
    assert x.shape == (8, 3, 64, 64)
    from museumtok.data.dataset import eval_batch

    full, _ = eval_batch("kodak", 128, limit=2)
    assert torch.equal(x[1], full[0, :, :64, 64:])                        # tile (0, 1) of the first image


def test_reconstruction_panel_layout():
    from museumtok.viz import reconstruction_panel

    x = torch.rand(3, 3, 16, 16)
    img = reconstruction_panel(x, {"a": x, "b": 1 - x}, gap=4, scale=2, label_height=10)
    assert img.size == (3 * 32 + 2 * 4, 10 + 3 * 32 + 2 * 4)
    px = torch.tensor(list(img.getpixel((32 + 4, 10))))                   # top-left pixel of column "a", row 0
    assert torch.allclose(px.float(), (x[0, :, 0, 0] * 255).round(), atol=1)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_panel(x, {"bad": x[:2]})
