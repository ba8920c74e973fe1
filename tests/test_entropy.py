"""Entropy models and real bitstreams (§5): lossless w.r.t. the quantized latents, estimated bits match
real bytes, and the same bytes decode to the same pixels in a fresh process with another thread count."""
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from museumtok.entropy import EntropyBottleneck, GaussianConditional, TableDecoder, TableEncoder, quantize_pmf
from museumtok.entropy.coding import PRECISION
from museumtok.codecs.learned import FactorizedPrior, ScaleHyperprior
from museumtok.codecs.learned.base import BitstreamError

ROOT = Path(__file__).resolve().parents[1]


def _real_bits(enc: TableEncoder) -> int:
    return 32 * len(enc.words())


def test_quantize_pmf_is_exact_and_deterministic():
    rng = np.random.default_rng(0)
    for n in (2, 7, 300):
        p = rng.dirichlet(np.ones(n) * 0.3)
        f = quantize_pmf(p, tail=1e-9)
        assert f.sum() == 2**PRECISION and f.min() >= 1 and len(f) == n + 1
        assert np.array_equal(f, quantize_pmf(p.copy(), tail=1e-9))
        big = np.flatnonzero(p > 1e-3)  # the integer table follows the pmf where it matters
        assert np.allclose(f[big] / 2**PRECISION, p[big], rtol=0.02, atol=2 / 2**PRECISION)
    with pytest.raises(ValueError, match="does not fit"):
        quantize_pmf(np.ones(2**PRECISION), 0.0)


def test_bottleneck_roundtrip_with_escapes_and_bits_agree():
    torch.manual_seed(0)
    eb = EntropyBottleneck(6).eval()
    eb.update()
    y = torch.randn(2, 6, 16, 16) * 3
    y[0, 0, 0, 0] = 30_000.0           # far outside every table: goes through the escape code
    y[1, 2, 3, 4] = -12_345.0
    enc = TableEncoder()
    y_hat = eb.compress(enc, y)
    assert torch.equal(y_hat, torch.round(y))
    out = eb.decompress(TableDecoder(enc.words()), y.shape)
    assert torch.equal(out, y_hat)
    # real bits vs the ideal code length of the integer tables vs −Σ log2 of the float likelihoods
    ideal = eb.bits(y_hat)
    assert abs(_real_bits(enc) - ideal) <= 0.01 * ideal + 64
    normal = y_hat.clone()
    normal[0, 0, 0, 0] = normal[1, 2, 3, 4] = 0
    with torch.no_grad():
        est = float(-torch.log2(eb.likelihood(normal.double())).sum())
    assert abs(eb.bits(normal) - est) <= 0.01 * est + 64


def test_gaussian_roundtrip_and_bits_agree():
    g = torch.Generator().manual_seed(1)
    gc = GaussianConditional().eval()
    gc.update()
    sigma = torch.exp(torch.empty(1, 8, 24, 24).uniform_(-2.5, 4.0, generator=g))
    y = torch.randn(1, 8, 24, 24, generator=g) * sigma
    enc = TableEncoder()
    y_hat = gc.compress(enc, y, sigma)
    dec = gc.decompress(TableDecoder(enc.words()), sigma)
    assert torch.equal(dec, y_hat)
    est = float(-torch.log2(gc.likelihood(y_hat.double(), sigma.double())).sum())
    real = _real_bits(enc)
    assert abs(real - est) <= 0.01 * est + 64, (real, est)
    # with means (the mean-scale variant): ŷ = round(y − μ) + μ
    mu = torch.randn(1, 8, 24, 24, generator=g) * 5
    enc = TableEncoder()
    y_hat = gc.compress(enc, y + mu, sigma, mu)
    assert torch.allclose(gc.decompress(TableDecoder(enc.words()), sigma, mu), y_hat)


def test_tables_are_required_and_saved(tmp_path):
    eb = EntropyBottleneck(3)
    with pytest.raises(RuntimeError, match="update"):
        eb.compress(TableEncoder(), torch.zeros(1, 3, 2, 2))
    m = FactorizedPrior(N=8, M=12).eval()
    m.update()
    m.save_pretrained(tmp_path)
    m2 = FactorizedPrior.from_pretrained(str(tmp_path))
    assert torch.equal(m2.entropy_bottleneck._table, m.entropy_bottleneck._table)


@pytest.fixture(scope="module")
def tiny_hyperprior():
    torch.manual_seed(0)
    m = ScaleHyperprior(N=8, M=12).eval()
    m.update()
    return m


def test_model_roundtrip_is_lossless_wrt_latents(tiny_hyperprior):
    from museumtok.entropy.coding import TableDecoder as Dec
    from museumtok.codecs.learned.base import HEADER

    m = tiny_hyperprior
    x = torch.rand(3, 70, 100)        # not a multiple of 64: padded, then cropped back
    enc = m.compress(x)
    lat = m._compress_latents(TableEncoder(), m.pad(x.unsqueeze(0)))
    words = np.frombuffer(enc.data, dtype="<u4", offset=HEADER.size)
    dec = Dec(words.astype(np.uint32))
    z_hat = m.entropy_bottleneck.decompress(dec, lat["z_hat"].shape)
    assert torch.equal(z_hat, lat["z_hat"])
    from museumtok.codecs.learned.base import float64_copy

    sigma = float64_copy(m.h_s)(z_hat.double())
    assert torch.equal(m.gaussian_conditional.decompress(dec, sigma), lat["y_hat"].double())
    x_hat = m.decompress(enc)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    assert torch.equal(x_hat, m.decompress(enc.data))   # bytes alone suffice


@pytest.mark.parametrize("cls", [FactorizedPrior, ScaleHyperprior])
def test_estimated_bits_match_real_bytes(cls, kodak_path):
    from museumtok.data import load_image, working_image

    torch.manual_seed(0)
    m = cls(N=8, M=12).eval()
    m.update()
    x = working_image(load_image(kodak_path).image, 128).x
    est = sum(m.estimate_bits(x).values())
    real = m.compress(x).bits
    assert abs(real - est) <= 0.01 * est + 128, (real, est)


def test_bad_bitstreams_and_params_say_so(tiny_hyperprior):
    m = tiny_hyperprior
    enc = m.compress(torch.rand(3, 64, 64))
    with pytest.raises(BitstreamError, match="format"):
        FactorizedPrior(N=8, M=12).decompress(enc.data)
    with pytest.raises(BitstreamError):
        m.decompress(b"xy")
    with pytest.raises(ValueError, match="no parameters"):
        m.compress(torch.rand(3, 64, 64), quality=3)
    with pytest.raises(ValueError, match="RGB"):
        m.compress(torch.rand(1, 64, 64))


_DECODE = textwrap.dedent("""
    import hashlib, sys, torch
    torch.set_num_threads(int(sys.argv[3]))
    from museumtok.codecs.learned import ScaleHyperprior
    m = ScaleHyperprior.from_pretrained(sys.argv[1]).eval()
    x = m.decompress(open(sys.argv[2], 'rb').read())
    print(hashlib.sha256((x * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest())
""")


def test_fresh_process_other_threads_decodes_same_pixels(tmp_path, kodak_path):
    from museumtok.data import load_image, pil_to_tensor

    torch.manual_seed(3)
    m = ScaleHyperprior(N=16, M=24).eval()
    m.update()
    m.save_pretrained(tmp_path / "ckpt")
    x = pil_to_tensor(load_image(kodak_path).image)[:, :192, :256]
    data = m.compress(x).data
    (tmp_path / "img.bin").write_bytes(data)
    here = hashlib.sha256((m.decompress(data) * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", _DECODE, str(tmp_path / "ckpt"), str(tmp_path / "img.bin"), "2"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == here


def test_formulas_match_compressai():
    """The likelihoods and GDN agree with CompressAI's implementations given the same parameters."""
    pytest.importorskip("compressai")
    from compressai.entropy_models import EntropyBottleneck as CEB
    from compressai.entropy_models import GaussianConditional as CGC
    from compressai.layers import GDN as CGDN

    from museumtok.codecs.layers import GDN

    g = torch.Generator().manual_seed(0)
    ours, theirs = EntropyBottleneck(5, filters=(3, 3, 3, 3)), CEB(5)
    with torch.no_grad():
        for k in range(5):
            for mine, ref in ((ours.H[k], theirs.matrices[k]), (ours.b[k], theirs.biases[k])):
                mine.copy_(torch.randn(mine.shape, generator=g) * 0.5)
                ref.copy_(mine)
            if k < 4:
                ours.a[k].copy_(torch.randn(ours.a[k].shape, generator=g))
                theirs.factors[k].copy_(ours.a[k])
        y = torch.round(torch.randn(2, 5, 6, 7, generator=g) * 4)
        lik_ref = theirs._likelihood(y.permute(1, 0, 2, 3).reshape(5, 1, -1))[0].reshape(5, 2, 6, 7).permute(1, 0, 2, 3)
        assert torch.allclose(ours.likelihood(y), lik_ref.clamp_min(1e-9), rtol=1e-5, atol=1e-7)

        sigma = torch.exp(torch.randn(2, 5, 6, 7, generator=g))
        _, lik_ref = CGC(None)(y, sigma, training=False)
        _, lik = GaussianConditional()(y, sigma, training=False)
        assert torch.allclose(lik, lik_ref, rtol=1e-5, atol=1e-7)

        x = torch.randn(2, 4, 5, 5, generator=g)
        for inverse in (False, True):
            a, b = GDN(4, inverse=inverse), CGDN(4, inverse=inverse)
            a.beta.copy_(torch.rand(4, generator=g) + 0.5)
            a.gamma.copy_(torch.rand(4, 4, generator=g) * 0.3)
            b.beta.copy_(a.beta)
            b.gamma.copy_(a.gamma)
            assert torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-6)


def test_autoregressive_model_roundtrip_and_bits(kodak_path):
    """Minnen et al. 2018: sequential (raster-order) coding is lossless and its bits match the estimate."""
    from museumtok.data import load_image, working_image
    from museumtok.codecs.learned import ContextHyperprior

    torch.manual_seed(0)
    m = ContextHyperprior(N=8, M=12).eval()
    m.update()
    x = working_image(load_image(kodak_path).image, 128).x
    enc = m.compress(x)
    lat = m._compress_latents(TableEncoder(), m.pad(x.unsqueeze(0)))
    x_hat = m.decompress(enc.data)
    from museumtok.codecs.learned.base import float64_copy, to_8bit

    assert torch.equal(x_hat, to_8bit(float64_copy(m.g_s)(lat["y_hat"])[0]))
    est = sum(m.estimate_bits(x).values())
    assert abs(enc.bits - est) <= 0.01 * est + 128, (enc.bits, est)
    # the context really is causal: changing a later latent leaves earlier predictions untouched
    y = torch.randn(1, 12, 6, 6)
    y2 = y.clone()
    y2[0, :, 3, 3] += 5
    c1, c2 = m.context_prediction(y), m.context_prediction(y2)
    assert torch.equal(c1[0, :, :3], c2[0, :, :3]) and torch.equal(c1[0, :, 3, :4], c2[0, :, 3, :4])
