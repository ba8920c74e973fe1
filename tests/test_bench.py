"""`museumtok bench`: one row per registry entry, M and set; numbers from evaluate_tokenizer; resumable."""
import json
import math

import pytest
import torch

from museumtok import registry
from museumtok.cli import main
from museumtok.eval.bench import BenchError, run_bench, tokenizer_Ms
from museumtok.eval.errors import collapse_check, error_analysis, token_patch_mse
from museumtok.eval.metrics import evaluate_tokenizer, image_metrics
from museumtok.metrics import mse
from museumtok.metrics.content import (colourfulness, difficulty_reasons, edge_density, hf_energy,
                                       image_statistics, sobel_magnitude, spearman)

SETS = ["kodak", "artworks-test"]


@pytest.fixture(scope="module")
def bench(data_available, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_bench(SETS, limit=1, out=out, progress=False, fast=True)


def test_a_row_per_entry_M_and_set(bench):
    keys = {(r["name"], r["M"], r["set"]) for r in bench.rows}
    for e in registry.entries("tokenizer") + registry.entries("codec"):   # generators (MaskGIT) are not benchmarked
        if not e.available:
            assert e.name in {s["name"] for s in bench.skipped}
            continue
        for s in SETS:
            if e.kind == "tokenizer":
                for M in tokenizer_Ms(e):
                    assert (e.name, M, s) in keys, (e.name, M, s)
            else:
                assert (e.name, None, s) in keys, (e.name, s)
    assert not bench.errors, bench.errors
    assert all(r["images"] == 1 for r in bench.rows)


def test_tokenizer_rows_agree_with_evaluate_tokenizer(bench):
    name = registry.names("tokenizer")[0]
    tok = registry.load(name)
    M = min(tok.supported_M)
    row = next(r for r in bench.rows if r["name"] == name and r["M"] == M and r["set"] == "kodak")
    ref = evaluate_tokenizer(tok, "kodak", M, limit=1)
    for k in ("psnr", "ssim", "ms_ssim", "usage", "perplexity", "size"):
        assert row[k] == pytest.approx(ref[k]), k
    assert row["bits_raw"] == pytest.approx(M * math.log2(tok.K))
    assert row["bpp"] == pytest.approx(row["bits"] / row["size"] ** 2)


def test_codec_rows_spend_at_most_the_tokenizer_bits_when_they_fit(bench):
    rows = [r for r in bench.rows if r.get("setting_kind") == "budget"]
    assert rows, "every tokenizer budget gets codec rows"
    codec = registry.load(rows[0]["name"])
    from museumtok.data.dataset import eval_batch

    for r in rows:
        for p in r["per_image"]:
            assert (p["bits"] <= r["budget_bits"]) == (r["fits"] == 1)
    r = max(rows, key=lambda r: r["budget_bits"])
    r = next(x for x in rows if x["name"] == rows[0]["name"] and x["budget_bits"] == r["budget_bits"] and x["set"] == "kodak")
    x, _ = eval_batch("kodak", r["size"], 1)
    enc = codec.compress_at_bits(x[0], r["budget_bits"]).encoded
    m = image_metrics(x[:1], codec.decompress(enc)[None])
    assert r["bits"] == enc.bits and r["psnr"] == pytest.approx(float(m["psnr"]))


def test_markdown_json_and_plots_written(bench):
    doc = json.loads(bench.json_path.read_text())
    assert len(doc["rows"]) == len(bench.rows)
    md = bench.md_path.read_text()
    for s in SETS:
        assert f"## {s} (1 images)" in md
    for name in {r["name"] for r in bench.rows}:
        assert f"| {name}" in md
    if not doc["lpips"]["available"]:
        assert "n/a[^lpips]" in md and doc["lpips"]["reason"] in md
    assert (bench.out / "bench_rd.html").stat().st_size > 0 and (bench.out / "bench_rd.png").stat().st_size > 0


def test_resume_skips_done_rows_and_redoes_changed_ones(bench):
    again = run_bench(SETS, limit=1, out=bench.out, progress=False, fast=True, plots=False)
    assert again.computed == 0 and again.cached == len(bench.rows)
    doc = json.loads(bench.json_path.read_text())
    doc["rows"][0]["fingerprint"] = "stale"
    bench.json_path.write_text(json.dumps(doc))
    third = run_bench(SETS, limit=1, out=bench.out, progress=False, fast=True, plots=False)
    assert third.computed == 1 and third.cached == len(bench.rows) - 1


def test_missing_checkpoint_is_skipped_with_a_note(data_available, tmp_path, monkeypatch):
    registry.entries()
    ghost = registry.RegistryEntry(name="ghost-tok", kind="tokenizer", target="museumtok.tokenizers.lloyd_patch:LloydPatchTokenizer",
                                   description="a tokenizer not trained yet", chapter="9", supported_M=(64,),
                                   default_M=64, checkpoint="ghost-tok-not-here")
    monkeypatch.setitem(registry.REGISTRY, "ghost-tok", ghost)
    res = run_bench(["kodak"], names=["ghost-tok", "jpeg"], limit=1, out=tmp_path, progress=False, fast=True, plots=False)
    assert [s["name"] for s in res.skipped] == ["ghost-tok"] and "missing" in res.skipped[0]["reason"]
    assert "skipped ghost-tok" in res.md_path.read_text()


def test_bad_names_and_sets_are_clear_errors(tmp_path, capsys):
    with pytest.raises(BenchError, match="known: .*lloyd-patch"):
        run_bench(["kodak"], names=["no-such-tok"], out=tmp_path, progress=False)
    assert main(["bench", "--names", "no-such-tok", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-tok" in err and "known:" in err
    assert main(["bench", "--sets", "flickr", "--out", str(tmp_path)]) == 2
    assert "kodak" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


# ---- error-analysis helpers, checked against reference libraries --------------------------------
def test_content_statistics_against_references():
    import numpy as np
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    x = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    hwc = x.permute(1, 2, 0).double().numpy()
    assert np.allclose(sobel_magnitude(x).numpy(), sobel(rgb2gray(hwc)))
    y = rgb2gray(hwc)
    P = np.abs(np.fft.fft2(y - y.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(40), np.fft.fftfreq(56), indexing="ij"))
    assert hf_energy(x, 0.25) == pytest.approx(P[f > 0.125].sum() / P.sum())
    rgb = hwc * 255
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    ref = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert colourfulness(x) == pytest.approx(ref)
    assert edge_density(x, 0.05) == pytest.approx(float((sobel(rgb2gray(hwc)) > 0.05).mean()))
    flat = torch.full((3, 32, 32), 0.5)
    assert hf_energy(flat) == 0.0 and edge_density(flat) == 0.0 and colourfulness(flat) == 0.0


def test_difficulty_reasons_name_the_outlying_statistic():
    stats = [{"hf_energy": v, "edge_density": 0.1} for v in (0.1, 0.1, 0.1, 0.9)]
    reasons = difficulty_reasons(stats)
    assert reasons[-1].startswith("much fine detail") and "+1.7σ" in reasons[-1]
    assert difficulty_reasons([{"a": 1.0}, {"a": 1.0}]) == ["typical content"] * 2


def test_difficulty_reasons_weighted_by_correlation_with_psnr():
    g = torch.Generator().manual_seed(0)
    edges = torch.rand(12, generator=g).tolist()
    colour = torch.rand(12, generator=g).tolist()
    psnr = [30 - 10 * e for e in edges]                    # edges alone decide the PSNR
    stats = [{"edge_density": e, "colourfulness": c} for e, c in zip(edges, colour)]
    reasons = difficulty_reasons(stats, psnr)
    worst, best = min(range(12), key=psnr.__getitem__), max(range(12), key=psnr.__getitem__)
    assert reasons[worst].startswith("many edges") and "ρ(PSNR, edge_density) = -1.00" in reasons[worst]
    assert reasons[best].startswith("few edges")


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    a = [3.0, 1.0, 2.0, 2.0, 5.0, 4.0, 0.5]
    b = [1.0, 2.0, 2.0, 3.0, 9.0, 4.0, 1.0]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)


def test_collapse_check_and_patch_mse():
    K = 64
    assert not collapse_check(torch.arange(K).repeat(10), K)["collapsed"]
    c = collapse_check(torch.zeros(640, dtype=torch.long), K)
    assert c["collapsed"] and c["perplexity"] == 1.0 and c["top_share"] == 1.0
    x, y = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    per = token_patch_mse(x, y, (4, 4))
    assert per.shape == (4, 4) and float(per.mean()) == pytest.approx(float(mse(x, y)), rel=1e-6)


def test_error_analysis_ranks_worst_first(data_available):
    name = registry.names("tokenizer")[0]
    rows = error_analysis(name, "artworks-test", limit=3)
    assert [r["psnr"] for r in rows] == sorted(r["psnr"] for r in rows)
    assert all(r["reason"] and set(image_statistics(torch.zeros(3, 16, 16))) <= set(r) for r in rows)


def test_interact_or_call_runs_once_in_fast_mode(monkeypatch):
    from ipywidgets import IntSlider

    from museumtok.viz import interact_or_call

    monkeypatch.setenv("MUSEUMTOK_FAST", "1")
    seen = []

    @interact_or_call(n=IntSlider(value=3, min=0, max=9), name=["a", "b"])
    def f(n, name):
        seen.append((n, name))

    assert seen == [(3, "a")] and callable(f)


# ---- entries the bench has not met yet: a fixed-rate codec, a tokenizer with an entropy coder -----
class FixedRateCodec:
    """A codec with no quality knob (like a learned codec trained at one λ): PNG of a 4×-downsampled image."""

    name = "fixed"

    def compress(self, x):
        import io

        from museumtok.codecs.base import EncodedImage
        from museumtok.data.images import tensor_to_pil

        buf = io.BytesIO()
        small = torch.nn.functional.avg_pool2d(x[None], 4)[0]
        tensor_to_pil(small).save(buf, format="PNG")
        return EncodedImage(buf.getvalue(), "fixed", x.shape[-2], x.shape[-1])

    def decompress(self, enc):
        import io

        from PIL import Image

        from museumtok.data.images import pil_to_tensor

        x = pil_to_tensor(Image.open(io.BytesIO(enc.data)))
        return torch.nn.functional.interpolate(x[None], scale_factor=4, mode="nearest")[0]


def _coded_tokenizer_class():
    from museumtok.metrics import code_counts, entropy_bits
    from museumtok.tokenizers.lloyd_patch import LloydPatchTokenizer

    class CodedLloyd(LloydPatchTokenizer):
        """Lloyd patches whose indices are 'entropy coded' at their empirical entropy per image."""

        def entropy_bits(self, indices):
            return indices.numel() * entropy_bits(code_counts(indices, self.K))

    return CodedLloyd


CodedLloyd = _coded_tokenizer_class()


def test_new_kinds_of_entries(data_available, tmp_path, monkeypatch):
    registry.entries()
    monkeypatch.setitem(registry.REGISTRY, "fixed-codec", registry.RegistryEntry(
        name="fixed-codec", kind="codec", target=f"{__name__}:FixedRateCodec", description="test", chapter="5"))
    monkeypatch.setitem(registry.REGISTRY, "coded-lloyd", registry.RegistryEntry(
        name="coded-lloyd", kind="tokenizer", target=f"{__name__}:CodedLloyd", description="test", chapter="4.1",
        supported_M=(64,), default_M=64, kwargs={"K": 16, "sizes": (64,)}))
    monkeypatch.setattr(registry, "_CACHE", {})
    res = run_bench(["kodak"], names=["coded-lloyd", "fixed-codec"], limit=2, out=tmp_path, progress=False,
                    fast=True, plots=False)
    assert not res.errors, res.errors
    tok_row = next(r for r in res.rows if r["name"] == "coded-lloyd")
    tok = registry.load("coded-lloyd")
    from museumtok.data.dataset import eval_batch

    x, _ = eval_batch("kodak", 64, 2)
    coded = [tok.entropy_bits(i) for i in tok.encode_tensor(x, 64)]
    assert tok_row["bits_coded"] == pytest.approx(sum(coded) / 2) and tok_row["bits_raw"] == 64 * 4
    assert tok_row["bpp"] == pytest.approx(tok_row["bits_coded"] / 64**2)
    fixed = [r for r in res.rows if r["name"] == "fixed-codec"]
    assert [r["setting_kind"] for r in fixed] == ["fixed"] and fixed[0]["size"] == 64
    assert fixed[0]["bits"] == pytest.approx(sum(p["bits"] for p in fixed[0]["per_image"]) / 2)


def test_summary_and_readme_block(bench, tmp_path):
    from museumtok.eval.bench_report import README_MARKERS, SUMMARY_NAME, render_summary, update_readme

    doc = json.loads(bench.json_path.read_text())
    summary = render_summary(doc)
    assert (bench.out / SUMMARY_NAME).read_text() == summary
    for name in {r["name"] for r in bench.rows}:
        assert f"| {name} |" in summary
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{README_MARKERS[0]}\nold table\n{README_MARKERS[1]}\n\nmore\n")
    assert update_readme(readme, summary)
    text = readme.read_text()
    assert "old table" not in text and summary in text and text.endswith(f"{README_MARKERS[1]}\n\nmore\n")
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, summary) and plain.read_text() == "no markers\n"


def test_an_entry_that_cannot_load_is_skipped(data_available, tmp_path, monkeypatch):
    registry.entries()
    monkeypatch.setitem(registry.REGISTRY, "broken-tok", registry.RegistryEntry(
        name="broken-tok", kind="tokenizer", target="museumtok.tokenizers.lloyd_patch:NoSuchClass",
        description="test", chapter="9", supported_M=(64,), default_M=64))
    res = run_bench(["kodak"], names=["broken-tok", "jpeg"], limit=1, out=tmp_path, progress=False, fast=True, plots=False)
    assert res.skipped[0]["name"] == "broken-tok" and "failed to load" in res.skipped[0]["reason"]
    assert {r["name"] for r in res.rows} == {"jpeg"}


def test_token_influence_local_and_spread():
    from museumtok.eval.errors import token_influence
    from museumtok.tokenizers.lloyd_patch import LloydPatchTokenizer

    torch.manual_seed(0)
    tok = LloydPatchTokenizer(K=16, sizes=(64,))
    idx = torch.randint(0, 16, (8, 8), generator=torch.Generator().manual_seed(0))
    change, outside = token_influence(tok, idx, 64, 9)
    assert outside == 0.0 and float(change[8:16, 8:16].sum()) > 0
    assert float(change.sum()) == pytest.approx(float(change[8:16, 8:16].sum()))

    class Blurred(LloydPatchTokenizer):  # a decoder whose tokens reach their neighbours
        def decode_indices(self, indices, M=None):
            return torch.nn.functional.avg_pool2d(super().decode_indices(indices, M), 5, 1, 2, count_include_pad=False)

    blurred = Blurred(K=16, sizes=(64,))
    blurred.codebook.copy_(tok.codebook)
    _, outside = token_influence(blurred, idx, 64, 9)
    assert 0 < outside < 1
