"""FID / KID / CLIPScore (museumtok.metrics.distribution): the math on a tiny stand-in feature network,
checked against torchmetrics and closed forms; the real extractors' "n/a: needs <file>" paths; CLIPScore
with a tiny random CLIP in a local folder. Everything offline."""
from __future__ import annotations

import math

import pytest
import torch

from museumtok.metrics import distribution as D


class StandIn(torch.nn.Module):
    """A fixed random conv net: (N, 3, H, W) -> (N, 16) features (plays the Inception's part)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.zero_()

    def forward(self, x):
        return torch.relu(self.conv(x.float())).mean((2, 3)).double()    # (N, 16)


def _images(n, shift=0.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 32, 32, generator=g) * 0.8 + shift).clamp(0, 1)


def test_frechet_distance_closed_form():
    # two Gaussians with commuting covariances: d² = ‖μ₁−μ₂‖² + Σᵢ (√a_i − √b_i)²
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])
    d = D.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert d == pytest.approx(9.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum()), rel=1e-9)
    assert D.frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) == pytest.approx(0.0, abs=1e-9)


def test_small_sample_fid_equals_the_full_formula():
    # fewer images than dimensions: the nuclear-norm route must equal eigvals(Σ₁Σ₂)
    g = torch.Generator().manual_seed(3)
    r, f = torch.randn(7, 40, generator=g), torch.randn(9, 40, generator=g) * 1.5 + 0.3
    full = D.frechet_distance(*D.gaussian_fit(r), *D.gaussian_fit(f))
    # (the eigvals route takes √ of the ~1e-15 rounding noise of Σ₁Σ₂'s 31 zero eigenvalues: ~1e-8 relative)
    assert D.fid_from_features(r, f) == pytest.approx(full, rel=1e-7)
    assert D.fid_from_features(r, r) == pytest.approx(0.0, abs=1e-8)


def test_fid_and_kid_agree_with_torchmetrics():
    tm = pytest.importorskip("torchmetrics.image")
    net = StandIn().eval()
    real, fake = _images(12, seed=1), _images(12, shift=0.15, seed=2)
    with torch.no_grad():
        fr, ff = net(real), net(fake)
    fid = tm.FrechetInceptionDistance(feature=StandIn().eval(), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert D.fid_from_features(fr, ff) == pytest.approx(float(fid.compute()), rel=1e-5, abs=1e-9)
    kid = tm.KernelInceptionDistance(feature=StandIn().eval(), subsets=1, subset_size=12, normalize=True)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    mean, _ = kid.compute()
    assert D.kid_from_features(fr, ff)[0] == pytest.approx(float(mean), rel=1e-5, abs=1e-9)


def test_kid_is_unbiased_for_one_distribution():
    # same distribution: the unbiased MMD² averages to 0 (the biased one would stay > 0)
    g = torch.Generator().manual_seed(5)
    vals = [D.mmd2_unbiased(torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g)) for _ in range(200)]
    mean, se = sum(vals) / len(vals), (torch.tensor(vals).std() / math.sqrt(len(vals))).item()
    assert abs(mean) < 3 * se
    shifted = D.mmd2_unbiased(torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g) + 1.0)
    assert shifted > 10 * se
    m, s = D.kid_from_features(torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g), subsets=5, subset_size=10)
    assert s is not None and s >= 0


def test_distribution_metrics_rank_a_worse_reconstruction_worse():
    net = StandIn().eval()
    x = _images(10, seed=7)
    close, far = (x + 0.02).clamp(0, 1), torch.nn.functional.avg_pool2d(x, 5, 1, 2) * 0.5
    a = D.distribution_metrics(x, close, features=net)
    b = D.distribution_metrics(x, far, features=net)
    assert 0 <= a["fid"] < b["fid"] and a["kid"] < b["kid"]


def test_real_extractors_say_what_they_need(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MUSEUMTOK_CLIP", raising=False)
    ok, reason = D.fid_available()
    assert not ok and ("weights-inception-2015-12-05-6726825d.pth" in reason or "torch-fidelity" in reason)
    with pytest.raises(D.MetricUnavailable, match="needs"):
        D.inception_features()
    ok, reason = D.clip_available()
    assert not ok and "openai/clip-vit-large-patch14" in reason and str(tmp_path / "hf") in reason
    st = D.distribution_status()
    assert st["fid"]["available"] is False and st["clipscore"]["reason"] == reason


def _tiny_clip(folder):
    """A random CLIP with a 40-symbol character vocabulary, saved like a Hub folder."""
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,.")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    cfg = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64,
                                  "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


def test_clipscore_with_a_tiny_clip_folder(monkeypatch, tmp_path):
    folder = _tiny_clip(tmp_path / "clip")
    monkeypatch.setenv("MUSEUMTOK_CLIP", str(folder))
    assert D.clip_available()[0]
    scorer = D.clip_scorer()
    x = _images(3, seed=11)
    texts = ["mona lisa, by leonardo", "the starry night", "a red square"]
    cos = scorer.cosines(x, texts)
    # the same cosine through CLIPModel's own forward: logits_per_image / exp(logit_scale)
    enc = scorer.processor(text=texts, images=[(im * 255).round().to(torch.uint8) for im in x], return_tensors="pt",
                           padding=True)
    with torch.no_grad():
        out = scorer.model(**enc)
    ref = out.logits_per_image.diagonal().double() / scorer.model.logit_scale.exp().double()
    assert torch.allclose(cos, ref, atol=1e-5)
    s = scorer.score(x, texts)
    assert torch.all(s >= 0) and torch.all(s <= D.CLIP_W)
    assert torch.allclose(s, D.CLIP_W * cos.clamp(min=0))
    m = D.distribution_metrics(x, x, texts=[texts[0], None, texts[2]], clip=scorer)
    assert m["clipscore"] == pytest.approx(m["clipscore_original"])   # same images: same score


@pytest.mark.slow
def test_the_inception_path_reads_a_file_in_the_hub_cache(monkeypatch, tmp_path):
    """A random network with torch-fidelity's Inception layout, saved under the published file name,
    runs through the real loading path (weights_only=True, nothing fetched)."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from museumtok import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with monkeypatch.context() as m:    # build the layout without loading any weights
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    dest = W.hub_checkpoint_dir() / W.KNOWN["fid-inception"].filename
    dest.parent.mkdir(parents=True)
    torch.save(state, dest)
    D._inception.cache_clear()
    try:
        assert D.fid_available()[0]
        feats = D.inception_features()
        x = _images(3, seed=4)
        f = feats(x)
        assert f.shape == (3, 2048) and torch.isfinite(f).all()
        m = D.distribution_metrics(x, x, features=feats)
        assert m["fid"] == pytest.approx(0.0, abs=1e-6) and math.isfinite(m["kid"])
        assert fe.load_state_dict_from_url is not None and "lambda" not in repr(fe.load_state_dict_from_url)
    finally:
        D._inception.cache_clear()


def test_bench_reports_them_or_says_what_they_need(data_available, monkeypatch, tmp_path):
    from museumtok.eval import bench

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MUSEUMTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MUSEUMTOK_CLIP", raising=False)
    sets, names = ["artworks-test"], ["lloyd-patch-k256", "jpeg"]
    plain = bench.run_bench(sets, names, limit=2, out=tmp_path / "a", progress=False, plots=False, fast=True)
    md = plain.md_path.read_text()
    assert "FID / KID n/a: needs" in md and "CLIPScore n/a: needs openai/clip-vit-large-patch14" in md
    assert all(r.get("fid") is None for r in plain.rows)
    # with extractors present (stand-ins for the Inception and CLIP), every non-sweep row gets the three numbers
    monkeypatch.setenv("MUSEUMTOK_CLIP", str(_tiny_clip(tmp_path / "clip")))
    net = StandIn().eval()
    monkeypatch.setattr(D, "inception_features", lambda: net)
    monkeypatch.setattr(D, "fid_available", lambda: (True, "stand-in"))
    res = bench.run_bench(sets, names, limit=2, out=tmp_path / "a", progress=False, plots=False, fast=True)
    assert not res.errors, res.errors
    rows = [r for r in res.rows if r["setting_kind"] != "quality"]
    assert rows and res.computed == len(rows)                     # the earlier rows are remeasured, sweeps kept
    for r in rows:
        assert r["fid"] >= 0 and math.isfinite(r["kid"]) and 0 <= r["clipscore"] <= D.CLIP_W
    assert {r["M"] for r in rows if r["name"] == "lloyd-patch-k256"} == {64, 256, 1024}
    md = res.md_path.read_text()
    assert "### artworks-test" in md and "| lloyd-patch-k256 | 64 |" in md and "n/a: needs" not in md


def test_paired_kid_leaves_out_each_image_with_its_own_reconstruction():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(10, 6, generator=g)
    assert D.mmd2_unbiased(x, x, paired=True) == pytest.approx(0.0, abs=1e-12)
    k = D.polynomial_kernel(x.double(), x.double())
    off = (k.sum() - k.diagonal().sum()) / 90
    # counted in the cross term, the 10 self-pairs give −(2/N)(mean diagonal − mean off-diagonal)
    assert D.mmd2_unbiased(x, x) == pytest.approx(float(-2 / 10 * (k.diagonal().mean() - off)), rel=1e-9)
    y = x + 0.05 * torch.randn(x.shape, generator=g)
    assert D.kid_from_features(x, y, paired=True)[0] == pytest.approx(D.mmd2_unbiased(x, y, paired=True))
    with pytest.raises(ValueError, match="equal set sizes"):
        D.mmd2_unbiased(x, y[:5], paired=True)
