"""Self-consistency (§7.4) against greedy decoding on the guide's held-out questions, paired answer by answer.

    .venv/bin/museumtok eval chat --tokenizer lloyd-patch-k1024 --M 64 --conditions real --out /tmp/greedy
    .venv/bin/museumtok eval chat --tokenizer lloyd-patch-k1024 --M 64 --conditions real \\
        --self-consistency 3 --temperature 0.7 --out /tmp/sc3
    .venv/bin/python benchmarks/self_consistency.py /tmp/greedy/<label>.json /tmp/sc3/<label>-sc3-t0.7.json

Both runs ask the same questions about the same unseen images (the evaluation is deterministic), so each
answer of one is paired with the same question's answer in the other (`museumtok.eval.chat.compare_runs`):
the table gives each run's mean, the paired difference with its standard error, and how many answers
scored higher or lower. Writes docs/chat/self_consistency.{json,md}. Nothing is asserted: an experiment.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from museumtok.cards import markdown_table
    from museumtok.eval.chat import _decoding, compare_runs

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="the baseline run's JSON (greedy)")
    p.add_argument("b", type=Path, help="the other run's JSON (self-consistency)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "chat")
    args = p.parse_args(argv)
    a, b = (json.loads(f.read_text(encoding="utf-8")) for f in (args.a, args.b))
    rows = compare_runs(a, b)
    name = lambda r: _decoding(r["config"]) or "greedy"                              # noqa: E731
    n_answers = sum(1 for x in a["answers"] if x["condition"] == "real")
    head = (f"`{a['config']['tokenizer']}` at M = {a['config']['M']}, adapter {a['config']['adapter']}, real tokens, "
            f"{n_answers} answers each. A = {name(a)} ({a['wall_s'] / 60:.1f} min), B = {name(b)} "
            f"({b['wall_s'] / 60:.1f} min; {b['wall_s'] / a['wall_s']:.1f}× the time). Paired by question: "
            f"B − A ± its standard error; ↑/↓ = answers scoring higher/lower in B. "
            f"Command: `.venv/bin/python benchmarks/self_consistency.py A.json B.json` on the runs of the docstring.")
    table = markdown_table([{"question": r["question"], "n": r["n"], "A": f"{r['a']:.2f}", "B": f"{r['b']:.2f}",
                             "B − A": f"{r['diff']:+.3f} ± {r['se_diff']:.3f}", "↑": r["higher"], "↓": r["lower"]}
                            for r in rows])
    hall = {k: r["summary"]["hallucination"]["all"]["mean"] for k, r in (("A", a), ("B", b))}
    text = head + "\n\n" + table + f"\nHallucination rate: A {hall['A']:.1%}, B {hall['B']:.1%}.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "self_consistency.md").write_text(text, encoding="utf-8")
    (args.out / "self_consistency.json").write_text(json.dumps(
        {"a": a["config"], "b": b["config"], "wall_s": [a["wall_s"], b["wall_s"]], "rows": rows,
         "hallucination": hall}, indent=1, ensure_ascii=False), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
