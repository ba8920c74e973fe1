"""The bench's reports: Markdown tables, the README summary and the RD plots, from bench.json alone.

Everything here reads the JSON document :func:`museumtok.eval.bench.run_bench` writes (``doc``), so a
report can be re-rendered without measuring anything:

* :func:`render_markdown` — bench.md: one table per set, the FID/KID/CLIPScore section, the sweeps, notes;
* :func:`render_summary` / :func:`update_readme` — the README-sized table between :data:`README_MARKERS`;
* :func:`rd_panels` / :func:`rd_figure` / :func:`write_plots` — bench_rd.html and bench_rd.png, drawn by
  the one RD plotter (:mod:`museumtok.eval.plot`).
"""
from __future__ import annotations

from pathlib import Path

JSON_NAME, MD_NAME, HTML_NAME, PNG_NAME = "bench.json", "bench.md", "bench_rd.html", "bench_rd.png"
SUMMARY_NAME = "summary.md"
#: a README holding these two lines gets the summary table between them on every full run
README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def mean_or_none(xs: list) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    xs = [x for x in xs if x is not None]
    return float(sum(xs) / len(xs)) if xs else None



def _fmt(v, nd=2, none="—"):
    if v is None:
        return none
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _sort_key(r: dict):
    order = {"tokens": 0, "budget": 1, "fixed": 2, "quality": 3}
    return (r["size"], r.get("bits") or 0, order.get(r.get("setting_kind"), 9), r["name"])


def table_rows(doc: dict, set_name: str, sweeps: bool = False) -> list[dict]:
    rows = [r for r in doc["rows"] if r["set"] == set_name and (r.get("setting_kind") == "quality") == sweeps]
    return sorted(rows, key=_sort_key)


def render_markdown(doc: dict) -> str:
    """The bench as Markdown: one table per set (tokenizers and codecs at their bits), then the sweeps."""
    lp = doc["lpips"]
    lp_cell = "—" if lp["available"] else "n/a[^lpips]"
    lines = [
        "# museumtok bench",
        "",
        f"Generated {doc.get('generated', '?')} by `{doc['command']}`"
        + (f" (fast mode, {doc['limit']} images per set)" if doc.get("fast") else "")
        + (f" with --limit {doc['limit']}" if doc.get("limit") and not doc.get("fast") else "") + ".",
        f"Host: {doc['host']['platform']}, {doc['host']['cpus']} CPUs, torch {doc['host']['torch']} "
        f"with {doc['host']['torch_threads']} thread(s); measuring all rows took {doc.get('compute_s', 0):.0f} s "
        "(sum over rows; a rerun measures only rows whose checkpoint, images or setting changed). "
        "Regenerate with `make bench`.",
        "",
        "Each row is the mean over the set's images, each a centre square crop resized to the working size "
        "S (px). **bits raw** = M·log2 K (fixed-length token indices); **bits coded** = entropy-coded bits "
        "(a tokenizer's own prior when it has one, a codec's real file size with headers); **bpp** divides "
        "the coded bits when present, the raw bits otherwise, by S². Codecs are run at most at the bits a "
        "tokenizer spends on the same crop (`compress_at_bits`). **usage** = share of the K codes used on "
        "the set, **perplexity** = 2^H(p̂) (K under uniform use, 1 under collapse). Times are per image, "
        "one CPU thread. Where a codec cannot fit a budget even at its lowest quality, its row shows the "
        "smallest file it can write (bits above the budget) and a note says on how many images.",
        "",
    ]
    head = ("| method | M | setting | S | bits raw | bits coded | bpp | PSNR dB | SSIM | MS-SSIM | LPIPS | "
            "usage | perplexity | enc ms | dec ms |")
    sep = "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"
    notes: list[str] = []
    for s in doc["sets"]:
        rs = table_rows(doc, s)
        if not rs:
            continue
        lines += [f"## {s} ({rs[0]['images']} images)", "", head, sep]
        for r in rs:
            mark = ""
            if r.get("note") and r.get("setting_kind") in ("budget", "fixed"):
                notes.append(f"{r['name']} on {s}, {r['setting']}: {r['note']}")
                mark = f"[^{len(notes)}]"
            lines.append("| " + " | ".join([
                f"{r['name']}{mark}", _fmt(r.get("M")), r["setting"], _fmt(r["size"]),
                _fmt(r.get("bits_raw"), 0), _fmt(r.get("bits_coded"), 0), _fmt(r.get("bpp"), 4),
                _fmt(r.get("psnr")), _fmt(r.get("ssim"), 4), _fmt(r.get("ms_ssim"), 4),
                _fmt(r.get("lpips"), 4, lp_cell), _fmt(r.get("usage"), 3), _fmt(r.get("perplexity"), 1),
                _fmt(r.get("encode_ms"), 1), _fmt(r.get("decode_ms"), 1)]) + " |")
        lines.append("")
    lines += render_distribution(doc)
    sweep_sets = [s for s in doc["sets"] if table_rows(doc, s, sweeps=True)]
    if sweep_sets:
        lines += ["## Codec quality sweeps", "", "| set | codec | S | quality | bpp | PSNR dB | SSIM | MS-SSIM | enc ms | dec ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in sweep_sets:
            for r in table_rows(doc, s, sweeps=True):
                lines.append(f"| {s} | {r['name']} | {r['size']} | {r.get('quality')} | {_fmt(r['bpp'], 4)} | "
                             f"{_fmt(r['psnr'])} | {_fmt(r['ssim'], 4)} | {_fmt(r['ms_ssim'], 4)} | "
                             f"{_fmt(r['encode_ms'], 1)} | {_fmt(r['decode_ms'], 1)} |")
        lines.append("")
    lines += ["## Notes", ""]
    if not lp["available"]:
        lines.append(f"[^lpips]: LPIPS n/a: {lp['reason']}.")
    for i, n in enumerate(notes, 1):
        lines.append(f"[^{i}]: {n}.")
    for sk in doc.get("skipped", []):
        lines.append(f"- skipped {sk['name']}: {sk['reason']}.")
    for er in doc.get("errors", []):
        lines.append(f"- error in {er['key']}: {er['error']}.")
    return "\n".join(lines) + "\n"


def render_distribution(doc: dict) -> list[str]:
    """The FID / KID / CLIPScore section: a table per set when measured, else the "n/a: needs <file>" lines."""
    st = doc.get("distribution") or {}
    fid, clip = st.get("fid", {}), st.get("clipscore", {})
    lines = ["## Distribution and text metrics (FID, KID, CLIPScore)", ""]
    if not fid.get("available"):
        lines.append(f"- FID / KID n/a: {fid.get('reason', 'not measured by this bench version')}.")
    if not clip.get("available"):
        lines.append(f"- CLIPScore n/a: {clip.get('reason', 'not measured by this bench version')}.")
    measured = [r for r in doc["rows"] if any(r.get(k) is not None for k in ("fid", "kid", "clipscore"))]
    if measured:
        lines += ["", "Originals against reconstructions of each set (FID, KID: Inception pool features; lower is "
                  "closer); CLIPScore = 100·max(cos, 0) of the CLIP embeddings of the image and its catalog title and "
                  "artist (artworks only), for the reconstruction and for the original. On a few dozen images FID "
                  "is biased upwards (a 2048-d Gaussian fitted to N < 2048 points): compare it only within one set "
                  "and size; KID is unbiased.", ""]
        for s in doc["sets"]:
            rs = [r for r in table_rows(doc, s) if r in measured]
            if not rs:
                continue
            lines += [f"### {s}", "", "| method | M | setting | S | FID | KID ×10³ | CLIPScore | CLIPScore (original) |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in rs:
                kid = None if r.get("kid") is None else 1e3 * r["kid"]
                lines.append(f"| {r['name']} | {_fmt(r.get('M'))} | {r['setting']} | {r['size']} | {_fmt(r.get('fid'))} | "
                             f"{_fmt(kid)} | {_fmt(r.get('clipscore'))} | {_fmt(r.get('clipscore_original'))} |")
            lines.append("")
    lines.append("")
    return lines


def render_summary(doc: dict) -> str:
    """A README-sized table: one line per tokenizer and M, and per codec at each token budget, sets as columns."""
    sets = [s for s in doc["sets"] if any(r["set"] == s for r in doc["rows"])]
    lines: dict[tuple, dict] = {}
    for r in doc["rows"]:
        if r.get("setting_kind") == "quality":
            continue
        k = (r["size"], r["name"], r.get("M"), r.get("budget_bits"))
        lines.setdefault(k, {})[r["set"]] = r
    head = ["method", "M / budget", "S px", "bits"] + [f"bpp · PSNR dB · MS-SSIM ({s})" for s in sets] + ["encode ms"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]

    def order(item):
        (size, name, M, budget), by_set = item
        r = next(iter(by_set.values()))
        return (size, r.get("budget_bits") or r.get("bits_raw") or 0, r["kind"] != "tokenizer", name)

    for (size, name, M, budget), by_set in sorted(lines.items(), key=order):
        r0 = next(iter(by_set.values()))
        setting = f"M = {M}" if M is not None else (f"≤ {budget:.0f} bits" if budget else r0["setting"])
        bits = _fmt(r0.get("bits_coded") if r0.get("bits_coded") is not None and M is not None else r0.get("bits_raw"), 0)
        if M is None:
            bits = "file"
        cells = []
        for s in sets:
            r = by_set.get(s)
            if r is None:
                cells.append("—")
                continue
            star = "*" if r.get("setting_kind") == "budget" and r.get("fits", r["images"]) < r["images"] else ""
            cells.append(f"{_fmt(r['bpp'], 3)}{star} · {_fmt(r['psnr'])} · {_fmt(r['ms_ssim'], 3)}")
        enc = _fmt(mean_or_none([r.get("encode_ms") for r in by_set.values()]), 1)
        out.append(f"| {name} | {setting} | {size} | {bits} | " + " | ".join(cells) + f" | {enc} |")
    n = ", ".join(f"{s} {next(r['images'] for r in doc['rows'] if r['set'] == s)} images" for s in sets)
    out += ["", f"Means over {n}; S = working image side (centre crop). bits: M·log2 K for tokenizers "
            "(entropy-coded when the tokenizer has a prior); codecs: real files, headers included, at most the "
            "tokenizer's bits on the same crop. * the codec cannot fit that budget on some images even at "
            "quality 1, so its bpp is above the budget. Full table: docs/bench/bench.md; "
            f"regenerate with `{doc['command']}`."]
    return "\n".join(out) + "\n"


def update_readme(path: Path, table: str) -> bool:
    """Replace the text between :data:`README_MARKERS` in ``path`` by ``table``; False when absent."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    a, b = README_MARKERS
    i, j = text.find(a), text.find(b)
    if i < 0 or j < i:
        return False
    new = text[: i + len(a)] + "\n" + table + text[j:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def _rd_groups(doc: dict, s: str) -> list[tuple[str, object, list[dict], bool]]:
    """One set's rows with a PSNR, grouped as the RD plots draw them: (name, tag, rows by bpp, sweep?);
    a quality sweep is grouped by working size, the rest by setting kind."""
    groups: dict[tuple, list] = {}
    for r in doc["rows"]:
        if r["set"] != s or r.get("psnr") is None:
            continue
        g = (r["name"], r["size"]) if r.get("setting_kind") == "quality" else (r["name"], r.get("setting_kind"))
        groups.setdefault(g, []).append(r)
    out = []
    for (name, tag), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r["bpp"])
        out.append((name, tag, rs, rs[0].get("setting_kind") == "quality"))
    return out


def rd_panels(doc: dict) -> list:
    """One :class:`museumtok.eval.plot.Panel` per set: tokenizers at their M, codecs at token budgets, sweeps."""
    from .plot import Panel, Series

    style = {"tokens": "tokenizer", "budget": "budget", "fixed": "point"}
    panels = []
    for s in [s for s in doc["sets"] if any(r["set"] == s for r in doc["rows"])]:
        series = []
        for name, tag, rs, sweep in _rd_groups(doc, s):
            label = f"{name} sweep {tag} px" if sweep else (name if tag == "tokens" else f"{name} at token bits")
            series.append(Series(
                label, [r["bpp"] for r in rs], [r["psnr"] for r in rs], "sweep" if sweep else style.get(tag, "point"),
                text=[f"{r['name']}<br>{r['setting']}<br>S={r['size']} px" for r in rs],
                labels=[f"M={r['M']}" for r in rs] if tag == "tokens" else [], colour_key=name))
        panels.append(Panel(s, series))
    return panels


def rd_figure(doc: dict):
    """bpp against PSNR per set: tokenizers as markers, codecs at tokenizer budgets, codec sweeps as lines."""
    from .plot import rd_plotly

    return rd_plotly(rd_panels(doc), "museumtok bench: rate against distortion", log_x=True, height=480)


def write_plots(doc: dict, out: Path) -> list[Path]:
    """bench_rd.html (plotly) and bench_rd.png (matplotlib), the same panels."""
    from .plot import rd_png

    out = Path(out)
    html = out / HTML_NAME
    rd_figure(doc).write_html(html, include_plotlyjs="cdn", full_html=True)
    png = rd_png(rd_panels(doc), out / PNG_NAME, "museumtok bench: rate against distortion", log_x=True)
    return [html, png]


__all__ = ["mean_or_none", "render_markdown", "render_distribution", "render_summary", "update_readme", "table_rows", "rd_panels",
           "rd_figure", "write_plots", "JSON_NAME", "MD_NAME", "HTML_NAME", "PNG_NAME", "SUMMARY_NAME", "README_MARKERS"]
