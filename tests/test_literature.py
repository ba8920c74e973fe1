"""The review's literature and errata as data: well-formed CSVs, sources, rendered docs, arithmetic."""
import csv
import math

import pytest

from museumtok import literature as lit
from museumtok.cli import main
from museumtok.metrics import perplexity


@pytest.fixture(scope="module")
def works():
    return lit.load_literature()


@pytest.fixture(scope="module")
def errata():
    return lit.load_errata()


def test_csv_columns_are_exactly_the_documented_ones():
    for path, fields in ((lit.LITERATURE_CSV, lit.LITERATURE_FIELDS), (lit.ERRATA_CSV, lit.ERRATA_FIELDS)):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == fields, path
        assert all(len(r) == len(fields) for r in rows), f"{path}: a row has the wrong number of fields"


def test_literature_is_well_formed_and_sourced(works):
    assert lit.validate_literature(works) == []
    assert len(works) >= 25
    # every row of §2's table is there (HiFiC and Entroformer are two papers, listed apart)
    assert {w.key for w in works if w.role == "timeline"} >= {
        "vqvae", "dalle-dvae", "perceiver", "vqgan", "tokenlearner", "maskgit", "hific", "entroformer",
        "flamingo", "palme", "kosmos2", "magvit2", "idefics2", "internvl15"}
    for w in works:
        assert w.url.startswith("https://"), w.key


def test_errata_are_well_formed_and_sourced(works, errata):
    assert lit.validate_errata(errata, works) == []
    assert len(errata) >= 40
    kinds = {k for e in errata for k in e.kinds}
    assert kinds == set(lit.KINDS), f"kinds never used: {set(lit.KINDS) - kinds}"
    assert [e.section_key for e in errata] == sorted(e.section_key for e in errata), "CSV not in section order"


def test_every_wrong_year_or_token_count_in_the_literature_has_an_erratum(works, errata):
    """literature.csv and errata.csv tell the same story: a discrepancy there is a row here."""
    by_work = {}
    for e in errata:
        for k in e.works:
            by_work.setdefault(k, []).append(e)
    for w in works:
        if w.year_wrong:
            assert any("year" in e.kinds for e in by_work.get(w.key, [])), f"{w.key}: review year {w.review_year} vs {w.year}"
        if w.tokens_wrong:
            assert any("figure" in e.kinds or "other" in e.kinds for e in by_work.get(w.key, [])), w.key


def test_known_corrections_are_recorded(works, errata):
    w = {x.key: x for x in works}
    assert (w["dalle-dvae"].year, w["dalle-dvae"].review_year, w["dalle-dvae"].arxiv) == (2021, 2019, "2102.12092")
    assert w["dalle-dvae"].venue == "ICML 2021" and (w["dalle-dvae"].tokens, w["dalle-dvae"].codebook) == (1024, 8192)
    assert w["magvit2"].arxiv == "2310.05737" and w["magvit2"].first_authors.startswith("Yu, L.")
    assert w["kosmos2"].first_authors.startswith("Peng, Z.")
    assert w["internvl15"].first_authors.startswith("Chen, Z.") and w["internvl15"].arxiv == "2404.16821"
    assert w["idefics2"].arxiv == "2405.02246" and "Mistral-7B" in w["idefics2"].paper_says
    assert w["perceiver"].year == 2021 and w["hific"].venue == "NeurIPS 2020" and w["entroformer"].venue == "ICLR 2022"
    assert w["palme"].venue == "ICML 2023" and w["flamingo"].tokens == 64
    e = {x.id: x for x in errata}
    assert "2307.04755" in e["s14-9-magvit2"].claim and "2310.05737" in e["s14-9-magvit2"].correct
    assert "Mistral-7B" in e["s2-idefics2-arch"].correct


def test_unverified_parts_are_labelled(errata, works):
    # rows whose correction leans on an absence of evidence say so
    e = {x.id: x for x in errata}
    for i in ("s2-vqvae-perplexity", "s2-flamingo-vqa", "s2-palme-figures", "s14-19-token-shuffle"):
        assert e[i].unverified, i
    assert sum(x.unverified for x in errata) < len(errata) / 3
    assert {x.key for x in works if x.unverified} >= {"palme", "magvit2"}


def test_arithmetic_rows_recompute(errata):
    checked = [(e, e.check()) for e in errata if e.check_expr]
    assert {e.id for e, _ in checked} >= {"s6-2-layers", "s6-2-mlp", "s6-2-total", "s6-2-m64", "s4-7-rate",
                                         "s2-vqvae-compression"}
    for e, c in checked:
        assert c.agrees, f"{e.id}: {c.expr} = {c.value} does not round to {e.check_value}"
        assert c.refutes_review, f"{e.id}: {c.value} rounds to the review's {e.review_value}: not an erratum"
    for e in errata:
        if "arithmetic" in e.kinds:
            assert e.check_expr and e.review_value, e.id


def test_section_6_2_numbers_by_hand():
    """The §6.2 example from first principles (d = 8192, 80 layers, n = 1456 tokens, 312 TFLOP/s)."""
    d, layers, n, peak = 8192, 80, 1456, 312e12
    per_layer = 4 * d * n**2 / peak
    assert per_layer == pytest.approx(0.2226e-3, rel=1e-3)                 # the review's 0.22 ms is right
    assert layers * per_layer * 1e3 == pytest.approx(17.81, abs=0.01)       # but not its 17.6 ms
    N = layers * (2 * d * d + 2 * d * 1024 + 3 * d * 28672)                # Llama 3 70B non-embedding weights
    assert N == 68_451_041_280
    assert (N + 2 * 128256 * d) * 2 / 1e9 == pytest.approx(141.1, abs=0.1)  # bf16 GB, more than one A100 80GB
    prefill = lambda m: (2 * N * (m + 1200) + 4 * d * (m + 1200) ** 2 * layers) / peak  # noqa: E731
    assert prefill(256) == pytest.approx(0.657, abs=1e-3)
    assert 1 - prefill(64) / prefill(256) == pytest.approx(0.135, abs=2e-3)


def test_review_perplexity_formula_is_inverted():
    """§4.3's exp(log K − H) is K/exp(H): 1 for a uniform codebook, where the true perplexity is K."""
    import torch

    K = 512
    uniform = torch.arange(K).repeat(4)
    collapsed = torch.zeros(4 * K, dtype=torch.long)
    for idx, true_ppl in ((uniform, K), (collapsed, 1)):
        ppl = perplexity(idx, K)
        assert ppl == pytest.approx(true_ppl)
        assert math.exp(math.log(K) - math.log(ppl)) == pytest.approx(K / true_ppl)  # the review's form


def test_eval_arithmetic_is_plain_arithmetic_only():
    assert lit.eval_arithmetic("2*3 + 4**2 - 10/4") == pytest.approx(19.5)
    assert lit.eval_arithmetic("exp(log(512) - log(512))") == pytest.approx(1.0)
    assert lit.eval_arithmetic("-(448/14)**2/4") == -256
    for bad in ("__import__('os')", "x + 1", "(1).real", "[1][0]", "2**1000", "open('f')", "lambda: 1"):
        with pytest.raises(ValueError):
            lit.eval_arithmetic(bad)


def test_rounds_to_uses_the_printed_precision():
    assert lit.rounds_to(17.81, "17.8") and not lit.rounds_to(17.81, "17.6")
    assert lit.rounds_to(1.9933e14, "1.99e14") and not lit.rounds_to(1.9933e14, "2.00e14")
    assert lit.rounds_to(1920.4, "1920") and not lit.rounds_to(1921, "1920")


def test_committed_errata_markdown_is_rendered_from_the_csv(errata):
    assert lit.ERRATA_MD.read_text(encoding="utf-8") == lit.render_errata_markdown(errata), (
        "docs/errata.md is stale: run `museumtok errata --write`")
    assert main(["errata", "--check"]) == 0


def test_markdown_escapes_cells_and_lists_every_row(errata):
    md = lit.render_errata_markdown(errata)
    body = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| id ")]
    assert len(body) == len(errata)
    assert all(line.count(" | ") == 6 for line in body), "an unescaped | split a row"
    assert "&lt;loc4&gt;" in md and "<loc4>" not in md
    assert "recomputed: `4*8192*1456**2/312e12*80*1e3` = 17.8118" in md


def test_markdown_round_trips_through_the_importer(errata):
    md = lit.render_errata_markdown(errata)
    parsed = lit.parse_errata_markdown(md)
    assert [r["claim"] for r in parsed] == [e.claim for e in sorted(errata, key=lambda e: e.section_key)]
    assert lit.import_errata_markdown(md, errata, "self") == []


def test_cli_folds_another_branchs_errata_rows(tmp_path, errata):
    other = tmp_path / "errata.md"
    other.write_text(
        "# Errata\n\n| review section | review says | correct | source |\n|---|---|---|---|\n"
        "| §6.2 | \"0.22 ms/layer … 80 layer → ≈ 17.6 ms\" | 17.8 ms | arithmetic |\n"
        f"| §4.1 | {errata[0].claim} | dup | x |\n"
        "| §9.1 | an example claim | an example correction | Example source https://example.org/paper |\n",
        encoding="utf-8")
    csv_path, md_path = tmp_path / "errata.csv", tmp_path / "out.md"
    lit.write_errata_csv(errata, csv_path)
    assert main(["errata", "--import", str(other), "--csv", str(csv_path), "--md", str(md_path)]) == 0
    merged = lit.load_errata(csv_path)
    new = [e for e in merged if e.id.startswith("imp-")]
    assert [e.section for e in new] == ["§6.2", "§9.1"]            # the duplicate claim was skipped
    assert new[1].urls == ("https://example.org/paper",) and new[1].kinds == ("other",)
    assert new[1].source == "Example source"
    assert "imported from" in new[0].notes
    assert md_path.read_text(encoding="utf-8") == lit.render_errata_markdown(merged)
    assert main(["errata", "--check", "--csv", str(csv_path), "--md", str(md_path)]) == 0
    md_path.write_text("stale", encoding="utf-8")
    assert main(["errata", "--check", "--csv", str(csv_path), "--md", str(md_path)]) == 1


def test_figures_draw_corrected_and_claimed_points(works, errata):
    from museumtok.viz import errata_arithmetic_figure, timeline_figure

    fig = timeline_figure(works)
    plotted = {t for tr in fig.data if tr.name in lit.FAMILIES for t in tr.text}
    claimed = {t for tr in fig.data if tr.name and tr.name.endswith("(review's claim)") for t in tr.text}
    assert claimed == {f"{w.key} (review)" for w in works if w.review_tokens and (w.tokens_wrong or w.year_wrong or not w.tokens)}
    assert "palme (review)" in claimed and "flamingo (review)" in claimed
    assert {w.key for w in works if w.tokens} == plotted
    assert fig.layout.yaxis.type == "log"
    only_vq = timeline_figure(works, families=["VQ"], show_review=False)
    assert [tr.name for tr in only_vq.data] == ["VQ"]
    bars = errata_arithmetic_figure(errata)
    assert len(bars.data[0].x) == sum(1 for e in errata if e.check_expr and e.review_value)


def test_html_table_escapes_and_keeps_columns(works):
    rows = lit.comparison_rows(works[:3])
    out = lit.html_table(rows)
    assert out.count("<tr>") == 1 + 3 and "review says" in out and "paper says" in out
    assert "<b>" not in lit.html_table([{"a": "<b>x</b>"}]) and "&lt;b&gt;" in lit.html_table([{"a": "<b>x</b>"}])


def test_import_recognises_claims_already_recorded_with_more_or_less_context(errata):
    """Another branch's hand-written rows quoting the same sentences (here: the shapes used on the
    notebook branch) are not imported twice, even when they quote more or less of the sentence."""
    md = ("| review section | review says | correct | source |\n|---|---|---|---|\n"
          "| §4.1 | \"Vector quantization cổ điển (Lloyd 1982)\" | scalar | Lloyd 1982 |\n"
          "| §6.2 | \"số phép nhân-cộng ≈ 4d(M+L)² (vì Q,K,V,O)\" | FLOPs | Kaplan |\n"
          "| §6.2 | \"0.22 ms/layer … Với 80 layer → ≈ 17.6 ms\" | 17.8 ms | arithmetic |\n"
          "| §6.2 | \"Thêm MLP (≈ 2×) → ~52 ms tổng inference\" | 0.66 s | Kaplan |\n"
          "| §6.2 | \"Nếu giảm M xuống 64 token, thời gian còn 13 ms\" | 13 % | arithmetic |\n"
          "| §9.2 | \"Kodak, CLIC\" | a new claim | somewhere |\n")
    new = lit.import_errata_markdown(md, errata, "other-branch")
    assert [e.claim for e in new] == ['"Kodak, CLIC"']
