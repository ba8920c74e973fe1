"""The ``museumtok`` command line.

    museumtok list                              tokenizers and codecs in the registry
    museumtok weights {list, add FILE...}       published weights you bring (sha256-checked, copied where read)
    museumtok data fetch [--mirror URL]         download missing catalog images (verified)
    museumtok data verify                       check every image found against its sha256
    museumtok data catalog --from DIR           rebuild data/catalog.csv (maintainers)
    museumtok data catalog --folder DIR         a catalog for your own collection (DIR/artworks/*)
    museumtok encode IMAGE -t NAME -M 256       tokens, bits and metrics for one image
    museumtok train NAME [--config F] [--FIELD V] train a tokenizer (e.g. lloyd-patch --K 1024)
    museumtok prior fit NAME... [--split S]     a tokenizer's entropy-coding prior -> its checkpoint's prior.json
    museumtok errata [--write | --check | --import FILE] the review's errata (docs/errata.md from data/errata.csv)
    museumtok eval rd --set kodak              RD curves (real bytes), BD-rate vs JPEG; JSON + HTML + PNG
    museumtok eval chat --tokenizer lloyd-patch-k1024 --M 64   the guide, scored on held-out questions and images
    museumtok bench [--sets ...] [--names ...] [--limit N] [--out DIR] [--fast]  one table of everything (§9)
    museumtok llm {convert, serve, ask IMAGE Q, cost}  the chat LLM (§6, §8)

Each sub-command is a small function; later chapters add theirs with :func:`subcommand`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def subcommand(fn: Callable[[argparse._SubParsersAction], None]):
    _COMMANDS.append(fn)
    return fn


@subcommand
def _list(sub):
    p = sub.add_parser("list", help="tokenizers, codecs and generators in the registry")
    p.add_argument("--json", action="store_true")

    def run(args):
        from .registry import entries

        rows = [{"name": e.name, "kind": e.kind, "chapter": e.chapter, "M": list(e.supported_M),
                 "available": e.available, "description": e.description, "reason": e.unavailable_reason}
                for e in entries()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        width = max(22, *(len(r["name"]) for r in rows))
        for r in rows:
            m = ("M " + (f"{r['M'][0]}..{r['M'][-1]}" if len(r["M"]) > 8 else ",".join(map(str, r["M"])))
                 if r["kind"] == "tokenizer" else r["kind"])       # codec, or generator (MaskGIT, §4.6)
            print(f"{r['name']:<{width}} §{r['chapter']:<5} {m:<16} {r['description']}")
            if not r["available"]:   # hidden from the app, bench and eval rd until this is fixed
                print(f"{'':<{width}}   hidden: {r['reason']}")
        return 0

    p.set_defaults(func=run)


@subcommand
def _weights(sub):
    p = sub.add_parser("weights", help="published weights you bring: list what is present, add checked files")
    wsub = p.add_subparsers(dest="weights_cmd", required=True)
    ls = wsub.add_parser("list", help="every known file: present (and where) or missing (and how to bring it)")
    ls.add_argument("--json", action="store_true")
    ad = wsub.add_parser("add", help="check files (sha256) or Hub model folders and copy them where their library looks")
    ad.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ad.add_argument("--check-only", action="store_true", help="check, do not copy")

    def run_list(args):
        from .weights import status

        rows = status()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        width = max(len(r["key"]) for r in rows)
        for r in rows:
            print(f"{r['key']:<{width}}  {'present' if r['present'] else 'missing'}  {r['used_by']}")
            print(f"{'':<{width}}  {'':7}  {r['path'] if r['present'] else r['reason']}")
        n = sum(r["present"] for r in rows)
        print(f"{n} of {len(rows)} present; add files with `museumtok weights add FILE...`")
        return 0

    def run_add(args):
        from .weights import add

        bad = 0
        for f in args.files:
            res = add(f, copy=not args.check_only)
            print(res.message, file=sys.stdout if res.dest else sys.stderr)
            bad += res.dest is None
        return 1 if bad else 0

    ls.set_defaults(func=run_list)
    ad.set_defaults(func=run_add)


@subcommand
def _data(sub):
    p = sub.add_parser("data", help="the image catalog: fetch, verify, rebuild")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    f = dsub.add_parser("fetch", help="download missing images into data/images/")
    f.add_argument("--mirror", help="base URL serving <collection>/<file> instead of the pinned raw URLs")
    f.add_argument("--dest", type=Path, default=None, help="download folder (default data/images)")
    f.add_argument("--collection", choices=["artworks", "kodak"])
    f.add_argument("--retries", type=int, default=4)
    f.add_argument("--timeout", type=float, default=30.0)
    f.add_argument("--force", action="store_true", help="download even files found elsewhere")

    def run_fetch(args):
        from .data.catalog import load_catalog
        from .data.fetch import fetch
        from .paths import DOWNLOAD_DIR

        rep = fetch(load_catalog(collection=args.collection), args.dest or DOWNLOAD_DIR, args.mirror,
                    args.retries, timeout=args.timeout, force=args.force)
        print(rep.summary())
        return 0 if rep.ok else 1

    f.set_defaults(func=run_fetch)
    v = dsub.add_parser("verify", help="check every image found against the catalog's sha256")

    def run_verify(args):
        from .data.catalog import ChecksumMismatch, DataNotFound, load_catalog

        bad = 0
        for e in load_catalog():
            try:
                e.find(verify=True)
            except (DataNotFound, ChecksumMismatch) as err:
                print(err)
                bad += 1
        print(f"{len(load_catalog()) - bad} ok, {bad} missing or wrong")
        return 1 if bad else 0

    v.set_defaults(func=run_verify)
    c = dsub.add_parser("catalog", help="rebuild data/catalog.csv (maintainers), or build one for your own "
                                            "collection with --folder")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="root", type=Path, help="a data folder laid out like ../shared/data")
    src.add_argument("--folder", type=Path, help="your collection: images in FOLDER/artworks/")
    c.add_argument("--out", type=Path, default=None)

    def run_catalog(args):
        from .data.build_catalog import build_from_folder, main
        from .data.catalog import load_catalog, write_catalog
        from .paths import CATALOG_CSV, DATA_DIR

        if args.folder is not None:
            out = args.out or args.folder / "catalog.csv"
            kodak = load_catalog(collection="kodak", path=DATA_DIR / "catalog.csv")   # the repository's
            entries = build_from_folder(args.folder, keep_kodak=kodak)
            write_catalog(entries, out)
            n_art = sum(e.collection == "artworks" for e in entries)
            print(f"wrote {len(entries)} entries ({n_art} of yours, {len(entries) - n_art} Kodak for evaluation) "
                  f"to {out}\nuse it with: MUSEUMTOK_DATA={args.folder} MUSEUMTOK_CATALOG={out} museumtok train ...")
            return 0
        n = main(args.root, args.out or CATALOG_CSV)
        print(f"wrote {n} entries")
        return 0

    c.set_defaults(func=run_catalog)


@subcommand
def _encode(sub):
    p = sub.add_parser("encode", help="tokenize one image and report bits and quality")
    p.add_argument("image")
    p.add_argument("-t", "--tokenizer", default="lloyd-patch-k1024")
    p.add_argument("-M", type=int, default=None)
    p.add_argument("--out", type=Path, help="save the reconstruction here (PNG)")

    def run(args):
        from .app.tokenize import tokenize_image

        res = tokenize_image(args.image, args.tokenizer, args.M)
        if res.error:
            print(f"error: {res.error}", file=sys.stderr)
            return 2
        for row in res.metrics:
            print(json.dumps(row))
        if args.out:
            res.reconstruction.save(args.out)
        return 0

    p.set_defaults(func=run)


@subcommand
def _train(sub):
    from .train import add_config_arguments, config_from_args, load_trainers

    p = sub.add_parser("train", help="train a tokenizer or model (see `museumtok train -h`)")
    tsub = p.add_subparsers(dest="train_cmd", required=True, metavar="NAME")
    for name, tr in sorted(load_trainers().items()):
        tp = tsub.add_parser(name, help=tr.help)
        add_config_arguments(tp, tr.config_cls)

        def run(args, tr=tr):
            cfg = config_from_args(tr.config_cls, args)
            out = tr.fn(cfg, "museumtok " + " ".join(sys.argv[1:]))
            print(f"saved {out}")
            return 0

        tp.set_defaults(func=run)


@subcommand
def _prior(sub):
    p = sub.add_parser("prior", help="tokenizers' entropy-coding priors (prior.json beside each checkpoint)")
    psub = p.add_subparsers(dest="prior_cmd", required=True)
    f = psub.add_parser("fit", help="fit the unigram prior of every M on a split, write <checkpoint>/prior.json")
    f.add_argument("names", nargs="+", metavar="NAME", help="registry tokenizers with a bundled checkpoint")
    f.add_argument("--split", default="artworks-train", help="images the code counts come from")

    def run_fit(args):
        from . import registry
        from .tokenizers.prior import save_tokenizer_prior

        for name in args.names:
            entry = registry.REGISTRY.get(name) if name in registry.names(available_only=False) else None
            if entry is None or entry.kind != "tokenizer" or entry.checkpoint_path is None:
                print(f"error: {name} is not a tokenizer with a bundled checkpoint", file=sys.stderr)
                return 2
            tok = registry.load(name)
            path = save_tokenizer_prior(tok, entry.checkpoint_path, args.split)
            bits = ", ".join(f"M={M}: {p.entropy_bits():.2f}" for M, p in sorted(tok.priors.items())[:6])
            print(f"{name}: wrote {path} ({path.stat().st_size} bytes; bits per token {bits})")
        return 0

    f.set_defaults(func=run_fit)


@subcommand
def _errata(sub):
    p = sub.add_parser("errata", help="the review's errata: print, regenerate or check docs/errata.md")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="regenerate docs/errata.md from data/errata.csv")
    g.add_argument("--check", action="store_true", help="exit 1 if docs/errata.md is not what the CSV renders to")
    g.add_argument("--import", dest="import_md", type=Path, metavar="FILE",
                   help="fold the rows of another errata.md table into data/errata.csv, then regenerate")
    p.add_argument("--csv", type=Path, default=None, help="errata CSV (default data/errata.csv)")
    p.add_argument("--md", type=Path, default=None, help="rendered markdown (default docs/errata.md)")

    def run(args):
        from . import literature as lit

        errata = lit.load_errata(args.csv)
        if args.import_md:
            new = lit.import_errata_markdown(args.import_md.read_text(encoding="utf-8"), errata, str(args.import_md))
            lit.write_errata_csv(errata + new, args.csv)
            errata = lit.load_errata(args.csv)
            print(f"imported {len(new)} new row(s) into {args.csv or lit.ERRATA_CSV}", file=sys.stderr)
        for problem in lit.validate_errata(errata):  # tests/test_literature.py makes these errors
            print(f"warning: {problem}", file=sys.stderr)
        if args.write or args.import_md:
            path = lit.write_errata_markdown(args.md, errata)
            print(f"wrote {path} ({len(errata)} rows)", file=sys.stderr)
            return 0
        if args.check:
            ok = lit.errata_markdown_is_current(args.md, errata)
            print("docs/errata.md is up to date" if ok else "docs/errata.md is stale: run `museumtok errata --write`",
                  file=sys.stderr)
            return 0 if ok else 1
        print(lit.render_errata_markdown(errata), end="")
        return 0

    p.set_defaults(func=run)


@subcommand
def _eval(sub):
    p = sub.add_parser("eval", help="evaluations: `eval rd` (rate–distortion with real bitstreams), `eval chat` (the guide)")
    esub = p.add_subparsers(dest="eval_cmd", required=True)
    r = esub.add_parser("rd", help="RD curves of the learned codecs, JPEG/WebP and tokenizers; BD-rate vs JPEG")
    r.add_argument("--set", default="kodak", help="kodak, artworks-test, artworks-val")
    r.add_argument("--limit", type=int, default=None, help="only the first N images")
    r.add_argument("--out", type=Path, default=Path("docs/rd"), help="folder for rd_<set>.json/.html/.png")
    r.add_argument("--codecs", default=None, help="comma-separated learned codecs or families (default: all present, bundled or published)")
    r.add_argument("--tokenizers", default=None, help="comma-separated tokenizers ('' for none; default: all)")
    r.add_argument("--extra", default=None, help="comma-separated checkpoint folders of codecs outside the registry "
                                                 "(e.g. a `train compressai-hyperprior` run), one curve each")

    def run(args):
        from .cards import markdown_table
        from .eval.rd import run_rd, summary_table, write_rd

        split = (lambda v: None if v is None else [s for s in v.split(",") if s.strip()])
        res = run_rd(args.set, args.limit, split(args.codecs), split(args.tokenizers), progress=True,
                     extra=split(args.extra))
        for path in write_rd(res, args.out):
            print(f"wrote {path}")
        print(markdown_table(summary_table(res)))
        cols = list(dict.fromkeys(k for r in res["bd_vs_jpeg"] for k in r))
        print(markdown_table([{c: r.get(c, "") for c in cols} for r in res["bd_vs_jpeg"]], floatfmt=".2f"))
        return 0

    r.set_defaults(func=run)

    c = esub.add_parser("chat", help="the museum guide: held-out questions on unseen images, scored; JSON + Markdown")
    c.add_argument("--tokenizer", default="lloyd-patch-k1024", help="image tokenizer (registry name)")
    c.add_argument("--M", type=int, default=64, help="image tokens")
    c.add_argument("--adapter", default="auto", help="'auto' (the registry's), 'none', or an adapter folder")
    c.add_argument("--llm", default=None, help="backend spec (default: $MUSEUMTOK_LLM or the embedded SmolLM2)")
    c.add_argument("--no-guard", action="store_true", help="give the image tokens to a model no adapter taught")
    c.add_argument("--no-check", action="store_true", help="do not cut answers naming what the card does not hold")
    c.add_argument("--conditions", default="real,shuffled,none", help="ablation conditions for the visual questions")
    c.add_argument("--no-preload", action="store_true",
                   help="with --adapter none: do not load the bundled guide adapters first (the bare base model answers)")
    c.add_argument("--limit", type=int, default=None, help="only the first N images of each source (quick runs)")
    c.add_argument("--threads", type=int, default=2, help="torch threads")
    c.add_argument("--self-consistency", type=int, default=1, metavar="N",
                   help="sample N answers per question and score the majority reading's answer (§7.2; 1: greedy)")
    c.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature (default 0: greedy; 0.7 when --self-consistency > 1)")
    c.add_argument("--out", type=Path, default=Path("docs/chat"), help="folder for <label>.json / .md")
    c.add_argument("--write-card", action="store_true", help="put the table into the adapter's model card")
    c.add_argument("--from-json", type=Path, default=None,
                   help="re-score a saved run (its answers are kept; no generation) and rewrite its .json/.md")

    def run_chat(args):
        import torch

        from .eval.chat import markdown, run_chat_eval, write_chat_eval, write_into_card
        from .llm.backends import make_backend

        if args.from_json is not None:
            from .eval.chat import summarise
            res = json.loads(args.from_json.read_text(encoding="utf-8"))
            res["summary"] = summarise(res)
            for path in write_chat_eval(res, args.from_json.parent):
                print(f"wrote {path}")
            print(markdown(res))
            return 0
        torch.set_num_threads(args.threads)
        adapter = None if args.adapter == "none" else (args.adapter if args.adapter == "auto" else Path(args.adapter))
        res = run_chat_eval(args.tokenizer, args.M, make_backend(args.llm), adapter=adapter, guard=not args.no_guard,
                            check=not args.no_check, conditions=[c for c in args.conditions.split(",") if c],
                            limit=args.limit, preload=not args.no_preload,
                            self_consistency=args.self_consistency, temperature=args.temperature)
        for path in write_chat_eval(res, args.out):
            print(f"wrote {path}")
        print(markdown(res))
        if args.write_card:
            folder = Path(args.adapter) if isinstance(adapter, Path) else None
            if folder is None:
                from .llm.chat import adapter_for
                folder = adapter_for(args.tokenizer)
            if folder is None:
                print("no adapter folder to write into")
                return 1
            sections = [markdown(r) for r in _card_runs(folder, res, args.out)]
            write_into_card(folder / "README.md", sections)
            print(f"wrote the table into {folder / 'README.md'}")
        return 0

    c.set_defaults(func=run_chat)


def _card_runs(folder: Path, res: dict, out: Path) -> list[dict]:
    """This run and the other saved runs of the same adapter (e.g. the other M), M ascending."""
    import json

    runs = {res["config"]["M"]: res}
    for p in sorted(Path(out).glob(f"{res['config']['tokenizer']}-M*-{Path(res['config']['adapter']).name}.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        if r.get("config", {}).get("adapter") == res["config"]["adapter"]:
            runs.setdefault(r["config"]["M"], r)
    return [runs[m] for m in sorted(runs)]


@subcommand
def _bench(sub):
    p = sub.add_parser("bench", help="one table of every registry tokenizer and codec (JSON, Markdown, plots)")
    p.add_argument("--sets", nargs="+", default=None, metavar="SET",
                   help="evaluation sets (default: kodak artworks-test)")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="registry names (default: all)")
    p.add_argument("--limit", type=int, default=None, help="first N images of each set")
    p.add_argument("--out", type=Path, default=None, help="output folder (default docs/bench)")
    p.add_argument("--fast", action="store_true", help="2 images per set (also MUSEUMTOK_FAST=1)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args):
        from .eval.bench import DEFAULT_SETS, run_bench
        from .paths import museumtok_command, no_images_hint

        if not _catalog_images_present():
            print(f"error: {no_images_hint()}", file=sys.stderr)
            return 2
        res = run_bench(args.sets or DEFAULT_SETS, args.names, args.limit, args.out, fast=args.fast or None,
                        progress=not args.quiet, plots=not args.no_plots,
                        command=museumtok_command() + " " + " ".join(sys.argv[1:] if argv_is_cli() else ["bench"]))
        print(f"{len(res.rows)} rows ({res.computed} measured, {res.cached} cached) in {res.wall_s:.1f} s "
              f"-> {res.md_path}", file=sys.stderr)
        for s in res.skipped:
            print(f"skipped {s['name']}: {s['reason']}", file=sys.stderr)
        for key, label in (("fid", "FID / KID"), ("clipscore", "CLIPScore")):
            st = res.meta.get("distribution", {}).get(key, {})
            if not st.get("available", True):
                print(f"{label} n/a: {st['reason']}", file=sys.stderr)
        for e in res.errors:
            print(f"error {e['key']}: {e['error']}", file=sys.stderr)
        if any(e["error"].startswith("DataNotFound") for e in res.errors):
            print(no_images_hint(), file=sys.stderr)
        return 1 if res.errors else 0

    p.set_defaults(func=run)


def _catalog_images_present() -> bool:
    """True when at least one image of the catalog in force is found (see ``paths.image_roots``)."""
    from .data.catalog import DataNotFound, load_catalog

    for e in load_catalog():
        try:
            e.find()
            return True
        except DataNotFound:
            pass
    return False


def argv_is_cli() -> bool:
    """True when this process was started as ``museumtok ...`` / ``python -m museumtok ...``."""
    return len(sys.argv) > 1 and sys.argv[1] == "bench"


@subcommand
def _llm(sub):
    p = sub.add_parser("llm", help="the chat LLM: convert the embedded model, serve it, ask about an image, costs")
    lsub = p.add_subparsers(dest="llm_cmd", required=True)
    c = lsub.add_parser("convert", help="convert the embedded SmolLM2 GGUF to safetensors (once, ~30 s)")
    s = lsub.add_parser("serve", help="OpenAI-compatible server on loopback in front of a backend")
    s.add_argument("--llm", default=None, help="backend: embedded (default), hf:<id>, echo")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--port", type=int, default=8000)
    a = lsub.add_parser("ask", help="ask a question about an image; the answer streams to stdout")
    a.add_argument("image")
    a.add_argument("question")
    a.add_argument("-t", "--tokenizer", default="lloyd-patch-k1024")
    a.add_argument("-M", type=int, default=None)
    a.add_argument("--llm", default=None, help="backend spec (default $MUSEUMTOK_LLM or embedded)")
    a.add_argument("--max-new-tokens", type=int, default=128)
    a.add_argument("--audit", type=Path, default=None, help="append the audit records to this JSONL file")
    k = lsub.add_parser("cost", help="the §6.2 cost example recomputed (Llama 3 70B on an A100)")
    k.add_argument("-L", type=int, default=1200, help="text tokens")
    k.add_argument("-M", type=int, default=256, help="image tokens")

    def run_convert(args):
        from .llm.backends import convert_embedded

        print(convert_embedded())
        return 0

    def run_serve(args):
        from .llm.serve import main as serve_main

        serve_main((["--llm", args.llm] if args.llm else []) + ["--host", args.host, "--port", str(args.port)])
        return 0

    def run_ask(args):
        from . import registry
        from .llm.audit import AuditLog
        from .llm.backends import make_backend
        from .llm.chat import ChatSession

        session = ChatSession(make_backend(args.llm), audit=AuditLog(args.audit) if args.audit else None,
                              max_new_tokens=args.max_new_tokens, reserve_answer=args.max_new_tokens)
        session.set_image(registry.load(args.tokenizer), args.image, args.M, image_id=Path(args.image).name)
        shown = ""
        for partial in session.ask(args.question):
            print(partial[len(shown):], end="", flush=True)
            shown = partial
        print()
        st = session.last.stats
        if st:
            print(f"[{session.backend.name}: TTFT {st['ttft_s'] * 1e3:.0f} ms, {st['tokens_per_s']:.1f} tokens/s, "
                  f"prompt {st['prompt_tokens']} tokens]", file=sys.stderr)
        return 0 if session.last.error is None else 2

    def run_cost(args):
        from .llm.cost import review_example

        r = review_example(L=args.L, M=args.M)
        for key, v in r.items():
            print(f"{key:<34} {v:.4g}")
        return 0

    c.set_defaults(func=run_convert)
    s.set_defaults(func=run_serve)
    a.set_defaults(func=run_ask)
    k.set_defaults(func=run_cost)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="museumtok", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        from .data.catalog import DataNotFound

        if isinstance(err, DataNotFound):          # a command that needs the catalog's images
            from .paths import no_images_hint

            print(no_images_hint(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
