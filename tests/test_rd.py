"""Rate–distortion evaluation: Bjøntegaard metrics on curves with known answers, the unigram token coder,
and a small real RD run (JPEG + a tiny learned codec) written to JSON/HTML/PNG."""
import json
import math

import numpy as np
import pytest
import torch

from museumtok.entropy.unigram import UnigramPrior
from museumtok.eval.rd import (COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK, bd_psnr, bd_rate, bd_table, evaluate_codec,
                          rd_images, write_rd)

RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNRS = np.array([26.0, 29.0, 31.5, 34.0, 37.0])


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    # the same PSNRs at 80% of the rate: −20% everywhere, so BD-rate is exactly −20%
    assert bd_rate(RATES, PSNRS, 0.8 * RATES, PSNRS) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, 1.5 * RATES, PSNRS) == pytest.approx(50.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_bd_psnr_of_a_shifted_curve_is_the_shift():
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS + 1.25) == pytest.approx(1.25, abs=1e-9)
    # the same shift read on the rate axis: a curve better by δ dB needs less rate (negative BD-rate)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS + 1.0) < 0


def test_bd_on_lines_matches_the_closed_form():
    # PSNR = a + b·log10(R): PCHIP reproduces lines exactly, so the integrals have closed forms
    r1 = np.geomspace(0.1, 2.0, 6)
    p1 = 30 + 10 * np.log10(r1)
    p2 = 30 + 12 * np.log10(r1)          # test curve: steeper line through the same rates
    lo, hi = math.log10(0.1), math.log10(2.0)
    mean_log = (hi**2 - lo**2) / 2 / (hi - lo)           # mean of log10 R over [lo, hi]
    assert bd_psnr(r1, p1, r1, p2) == pytest.approx(2 * mean_log, abs=1e-9)
    # BD-rate: at equal PSNR D, log10 R1 = (D−30)/10 and log10 R2 = (D−30)/12 over the overlap of PSNRs
    d_lo, d_hi = max(p1.min(), p2.min()), min(p1.max(), p2.max())
    mean_diff = ((1 / 12 - 1 / 10) * ((d_hi - 30) ** 2 - (d_lo - 30) ** 2) / 2) / (d_hi - d_lo)
    assert bd_rate(r1, p1, r1, p2) == pytest.approx((10**mean_diff - 1) * 100, abs=1e-9)


def test_bd_rejects_bad_curves():
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(RATES, PSNRS, RATES, PSNRS + 50)
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS)
    with pytest.raises(ValueError, match="positive"):
        bd_rate(-RATES, PSNRS, RATES, PSNRS)


def test_compressai_reference_is_monotone():
    b, p = np.array(COMPRESSAI_BMSHJ2018_HYPERPRIOR_KODAK).T
    assert len(b) == 8 and np.all(np.diff(b) > 0) and np.all(np.diff(p) > 0)


def test_unigram_prior_codes_tokens_losslessly_near_their_entropy():
    g = np.random.default_rng(0)
    p = g.dirichlet(np.full(64, 0.2))
    train = g.choice(64, size=20_000, p=p)
    prior = UnigramPrior.fit(train, 64)
    test = g.choice(64, size=4096, p=p)
    data = prior.encode(test)
    assert np.array_equal(prior.decode(data, test.size), test)
    ideal = prior.bits(test)
    assert abs(8 * len(data) - ideal) <= 0.01 * ideal + 64
    assert ideal < 4096 * 6            # beats the raw M·log2 K bits of a skewed codebook
    assert prior.entropy_bits() < 6
    with pytest.raises(ValueError, match="indices"):
        UnigramPrior.fit(np.array([0, 64]), 64)


def test_small_rd_run_writes_json_html_png(tmp_path, data_available):
    import museumtok
    from museumtok.codecs.learned import ScaleHyperprior

    images = [(i, x[:, :128, :192]) for i, x in rd_images("kodak", limit=2)]
    jpeg = museumtok.load("jpeg")
    torch.manual_seed(0)
    tiny = ScaleHyperprior(N=8, M=12).eval()
    tiny.update()
    res = {"set": "kodak-crops", "images": [i for i, _ in images], "curves": {
        "jpeg": {"kind": "classical", "points": [evaluate_codec(jpeg, images, quality=q) for q in (10, 30, 60, 90)]},
        "tiny": {"kind": "learned", "points": [dict(evaluate_codec(tiny, images), params={"codec": "tiny", "lmbda": 0})]},
    }}
    pts = res["curves"]["jpeg"]["points"]
    assert all(a["bpp"] < b["bpp"] and a["psnr"] < b["psnr"] for a, b in zip(pts, pts[1:]))
    row = res["curves"]["tiny"]["points"][0]
    assert row["images"][0]["bytes"] * 8 / (128 * 192) == pytest.approx(row["images"][0]["bpp"])
    assert abs(row["bpp"] - row["bpp_estimated"]) <= 0.01 * row["bpp_estimated"] + 128 / (128 * 192)
    res["curves"]["webp-like"] = {"kind": "classical", "points": [dict(p, bpp=0.7 * p["bpp"]) for p in pts]}
    res["bd_vs_jpeg"] = bd_table(res)
    (bd,) = [r for r in res["bd_vs_jpeg"] if r["curve"] == "webp-like"]
    assert bd["bd_rate_%"] == pytest.approx(-30.0, abs=1e-6)
    paths = write_rd(res, tmp_path)
    assert [p.suffix for p in paths] == [".json", ".html", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert json.loads(paths[0].read_text())["curves"]["tiny"]["points"][0]["bytes"] > 0


def test_psnr_gain_at_rate_reads_a_single_point_against_a_curve():
    from museumtok.eval.rd import psnr_gain_at_rate, summary_table

    # JPEG-like anchor on a line in log-rate (PCHIP reproduces it exactly); one learned point 1.5 dB above it
    rates = np.geomspace(0.1, 2.0, 8)
    res = {"curves": {"jpeg": {"kind": "classical", "points": [{"bpp": r, "psnr": 30 + 10 * math.log10(r)} for r in rates]}}}
    p = {"bpp": 0.3, "psnr": 30 + 10 * math.log10(0.3) + 1.5, "ms_ssim": 0.9, "encode_ms": 1.0, "decode_ms": 2.0,
         "params": {"codec": "context-q3", "lmbda": 0.0067}}
    res["curves"]["context"] = {"kind": "learned", "points": [p]}
    assert psnr_gain_at_rate(res, "jpeg", p["bpp"], p["psnr"]) == pytest.approx(1.5, abs=1e-9)
    assert psnr_gain_at_rate(res, "jpeg", 5.0, 40.0) is None          # outside the anchor's rates
    assert psnr_gain_at_rate(res, "webp", 0.3, 30.0) is None          # no such curve
    (row,) = summary_table(res)
    assert row["codec"] == "context-q3" and row["Δ dB vs jpeg"] == pytest.approx(1.5, abs=1e-9)
    assert row["dec ms"] == 2.0


def test_plot_colours_are_distinct_past_ten_curves_and_shared_by_both_backends(tmp_path):
    """The PNG once took matplotlib's 10-colour cycle, so the 11th curve repeated the first's colour."""
    from museumtok.eval.plot import Panel, Series, _colours, rd_plotly, rd_png

    panel = Panel("kodak", [Series(f"curve-{i:02d}", [0.1 * (i + 1), 0.2 * (i + 1)], [20.0 + i, 21.0 + i]) for i in range(14)])
    colours = _colours([panel])
    assert len(set(colours.values())) == 14
    fig = rd_plotly([panel], "t")
    assert [tr.marker.color for tr in fig.data] == [colours[s.name] for s in panel.series]
    png = rd_png([panel], tmp_path / "rd.png", "t")
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[2] in (3, 4)
