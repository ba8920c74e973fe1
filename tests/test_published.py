"""Published models beside ours (museumtok/zoo/published.py): CompressAI's pretrained codecs and aMUSEd's
VQ-GAN, loaded from tiny random stand-ins written in the exact cache layout (TORCH_HOME, HF_HUB_CACHE
set to tmp folders), so every loading path runs offline; without the files they stay hidden, with the
reason, in `museumtok list`, the app, `eval rd` and `bench`."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest
import torch

from museumtok import registry
from museumtok import weights as W

compressai = pytest.importorskip("compressai")

STAND_INS = {   # arch -> a tiny random network of the same class (from_state_dict reads N, M from it)
    "bmshj2018-factorized": lambda m: m.FactorizedPrior(8, 12),
    "bmshj2018-hyperprior": lambda m: m.ScaleHyperprior(8, 12),
    "mbt2018-mean": lambda m: m.MeanScaleHyperprior(8, 12),
    "cheng2020-anchor": lambda m: m.Cheng2020Anchor(8),
}


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub / Hugging Face / museumtok caches; the registry's loaded objects forgotten."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))
    registry.clear_cache()
    yield tmp_path
    registry.clear_cache()


def write_compressai_stand_in(arch: str, quality: int) -> tuple[str, object]:
    """A random-init CompressAI model's state_dict under the exact file name the zoo would download."""
    import compressai.models as cm

    torch.manual_seed(quality)
    net = STAND_INS[arch](cm)
    net.update(force=True)
    pub = W.COMPRESSAI_FILES[(arch, quality)]
    dest = W.hub_checkpoint_dir() / pub.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), dest)
    return f"compressai-{arch}-q{quality}", net


def _list_output() -> str:
    from museumtok.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["list"]) == 0
    return buf.getvalue()


def test_without_the_files_they_are_hidden_with_the_reason(caches):
    from museumtok.app.compress import codec_choices
    from museumtok.eval.rd import learned_codecs

    e = registry.get("compressai-bmshj2018-hyperprior-q4")
    assert not e.available and e.learned
    assert "bmshj2018-hyperprior-4-de1b779c.pth.tar" in e.unavailable_reason
    assert str(caches / "torch" / "hub" / "checkpoints") in e.unavailable_reason
    assert "museumtok weights add" in e.unavailable_reason
    published = [n for n in registry.names(available_only=False) if n.startswith(("compressai-", "amused-"))]
    assert len(published) == 13
    assert not set(published) & set(registry.names()) and not set(published) & set(codec_choices())
    assert not any(f.startswith("compressai-") for f in learned_codecs())
    out = _list_output()
    for n in published:    # each listed, with a one-line reason right under it
        line = out.splitlines()[[i for i, ln in enumerate(out.splitlines()) if ln.startswith(n + " ")][0] + 1]
        assert line.strip().startswith("hidden: needs ")
    with pytest.raises(registry.CheckpointMissing, match="de1b779c"):
        registry.load("compressai-bmshj2018-hyperprior-q4")
    assert "amused/amused-256/vqvae" in registry.get("amused-vqgan-f16").unavailable_reason


@pytest.mark.parametrize("arch,quality", [("bmshj2018-factorized", 4), ("bmshj2018-hyperprior", 1),
                                          ("mbt2018-mean", 8), ("cheng2020-anchor", 3)])
def test_a_stand_in_in_the_hub_cache_compresses_a_real_image(caches, arch, quality, artwork_path):
    from museumtok.app.compress import codec_choices
    from museumtok.data.images import load_image, working_image
    from museumtok.eval.rd import learned_codecs

    name, net = write_compressai_stand_in(arch, quality)
    e = registry.get(name)
    assert e.available and e.unavailable_reason is None
    assert name in registry.names("codec") and name in codec_choices()
    assert name in learned_codecs()[f"compressai-{arch}"]
    assert "hidden" not in _list_output().split(name, 1)[1].splitlines()[1]
    codec = registry.load(name)
    assert codec.cfg.arch == arch and codec.cfg.quality == quality and codec.cfg.N == 8
    assert codec.cfg.lmbda > 0
    x = working_image(load_image(artwork_path).image, 128).x                  # (3, 128, 128), a real artwork
    enc = codec.compress(x)
    assert isinstance(enc.data, bytes) and enc.bits == 8 * len(enc.data) > 100
    x_hat = codec.decompress(enc.data)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all() and 0 <= x_hat.min() and x_hat.max() <= 1
    assert torch.equal(codec.decompress(enc), x_hat)                           # decoding is reproducible
    # the bitstream decodes to what CompressAI's own model reconstructs from the same latents
    with torch.no_grad():
        ref = net.eval().decompress(**{k: v for k, v in net.compress(x[None]).items()})["x_hat"][0]
    assert (x_hat - ref.clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6
    from museumtok.codecs.learned.base import BitstreamError

    with pytest.raises(BitstreamError):
        codec.decompress(enc.data[:-3])                                       # truncated
    with pytest.raises(BitstreamError):
        codec.decompress(bytes([0]) + enc.data[1:])                            # another codec's format id
    a = codec.analyse(x)
    assert a["bpp_map"].shape == (128, 128) and float(a["bpp_map"].sum()) > 0
    est = sum(codec.estimate_bits(x).values())
    assert est > 0


def test_it_appears_in_the_codecs_tab_rd_and_bench(caches, artwork_path, data_available):
    from museumtok.app.compress import compress_image
    from museumtok.eval.bench import run_bench
    from museumtok.eval.rd import run_rd

    name, _ = write_compressai_stand_in("mbt2018-mean", 4)
    res = compress_image(str(artwork_path), name, size=256, compare=False)
    assert res.error is None and res.nbytes > 0 and res.bpp_map is not None
    assert f"{res.nbytes} bytes" in res.metrics[0]["note"]
    rd = run_rd("kodak", limit=1, codecs=[name], tokenizers=[], jpeg_qualities=(10, 50), webp_qualities=(10, 50))
    pts = rd["curves"]["compressai-mbt2018-mean"]["points"]
    assert rd["curves"]["compressai-mbt2018-mean"]["kind"] == "learned" and pts[0]["params"]["codec"] == name
    assert pts[0]["bpp"] > 0 and pts[0]["images"][0]["bytes"] > 0
    b = run_bench(["kodak"], names=[name, "compressai-cheng2020-anchor-q6"], limit=1, out=caches / "bench",
                  progress=False, plots=False, fast=True)
    assert not b.errors, b.errors
    rows = [r for r in b.rows if r["name"] == name]
    assert rows and all(r["bits"] > 0 and r["psnr"] is not None for r in rows)
    assert [s["name"] for s in b.skipped] == ["compressai-cheng2020-anchor-q6"]
    assert "cheng2020-anchor-6-4c052b1a.pth.tar" in b.skipped[0]["reason"]
    md = b.md_path.read_text()
    assert "skipped compressai-cheng2020-anchor-q6: needs cheng2020-anchor-6-4c052b1a.pth.tar" in md


# ---------------------------------------------------------------------------------------- aMUSEd
def tiny_vq_folder(folder, K: int = 32, channels: int = 8):
    """A random diffusers VQModel with f = 16 (five blocks), saved like the Hub's ``vqvae/`` folder."""
    from diffusers import VQModel

    torch.manual_seed(0)
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 5,
                 up_block_types=("UpDecoderBlock2D",) * 5, block_out_channels=(channels,) * 5, layers_per_block=1,
                 latent_channels=4, num_vq_embeddings=K, norm_num_groups=4, sample_size=32,
                 mid_block_add_attention=False, lookup_from_codebook=True)
    vq.save_pretrained(str(folder))
    return vq


def write_hf_cache_stand_in(cache, repo="amused/amused-256", revision="0" * 40):
    snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / revision
    tiny_vq_folder(snap / "vqvae")
    (cache / ("models--" + repo.replace("/", "--")) / "refs").mkdir(parents=True)
    (cache / ("models--" + repo.replace("/", "--")) / "refs" / "main").write_text(revision)
    return snap / "vqvae"


def test_amused_vqgan_from_the_hub_cache_tokenizes_a_real_image(caches, artwork_path):
    pytest.importorskip("diffusers")
    e = registry.get("amused-vqgan-f16")
    assert not e.available
    folder = write_hf_cache_stand_in(caches / "hf")
    assert e.available and W.locate("amused-256-vqvae") == folder
    assert "amused-vqgan-f16" in registry.names("tokenizer")
    tok = registry.load("amused-vqgan-f16")
    assert tok.supported_M == e.supported_M == (64, 256, 1024) and tok.K == 32 and tok.f == 16
    t = tok.encode(str(artwork_path), M=64)
    assert t.grid_shape == (8, 8) and t.tokenizer == "amused-vqgan-f16"
    assert int(t.indices.min()) >= 0 and int(t.indices.max()) < 32
    assert t.bits_raw == 64 * 5
    x_hat = tok.decode(t)
    assert x_hat.shape == (3, 128, 128) and 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    # indices are the nearest codes of the VQModel's own quantizer
    vq = tok.model.vq
    with torch.no_grad():
        h = vq.encode(t.working.x[None]).latents
        z = vq.quantize(h)[0]
    codes = tok.indices_to_codes(t.indices[None])
    assert torch.allclose(codes, z, atol=1e-5)


def test_weights_add_a_hub_folder(caches):
    pytest.importorskip("diffusers")
    src = caches / "download" / "vqvae"
    tiny_vq_folder(src)
    res = W.add(src)
    assert res.key == "amused-256-vqvae" and res.dest == W.local_model_dir("amused-256-vqvae"), res.message
    assert registry.get("amused-vqgan-f16").available
    assert W.locate("amused-256-vqvae") == res.dest
    # a folder whose weights do not fit its config is refused
    bad = caches / "bad"
    tiny_vq_folder(bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_vq_embeddings"] = 64
    (bad / "config.json").write_text(json.dumps(cfg))
    res = W.add(bad)
    assert res.dest is None and "refused" in res.message and "shape" in res.message
