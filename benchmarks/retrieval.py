"""Top-1 retrieval of catalog works from their tokens, on perturbed copies; the threshold trade-off.

    OMP_NUM_THREADS=1 python benchmarks/retrieval.py                      # lloyd-patch-k1024, M=1024
    python benchmarks/retrieval.py -t lloyd-patch-k256 -M 256 --no-pyramid --n 40

Each indexed work is queried as a crop (70–90 %), a rescaled copy (0.3–0.6×), a JPEG (q 15–40),
a WebP (q 10–30) and a crop re-encoded as JPEG. "Unknown" queries are the JPEG copies searched
with their own work left out of the index: the scores a work that is not in the catalog gets.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from museumtok import registry  # noqa: E402
from museumtok.data.images import load_image  # noqa: E402
from museumtok.llm.retrieval import PERTURBATIONS, CatalogIndex, perturb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-t", "--tokenizer", default="lloyd-patch-k1024")
    p.add_argument("-M", type=int, default=1024)
    p.add_argument("--no-pyramid", action="store_true", help="whole-image histogram only")
    p.add_argument("--n", type=int, default=None, help="query only n works (default all)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    index = CatalogIndex.build(registry.load(a.tokenizer), a.M, pyramid=not a.no_pyramid)
    print(f"index: {len(index.ids)} works, {a.tokenizer} M={a.M}, pyramid={not a.no_pyramid}, "
          f"{time.perf_counter() - t0:.1f} s")
    rng = random.Random(a.seed)
    ids = index.ids if a.n is None else rng.sample(index.ids, a.n)
    known: dict[str, list[tuple[bool, float]]] = {k: [] for k in PERTURBATIONS}
    unknown: list[float] = []
    for cid in ids:
        img = load_image(index.entries[cid].find()).image
        for kind in PERTURBATIONS:
            m = index.query(perturb(img, kind, rng))
            known[kind].append((m.ranked[0][0] == cid, m.score))
        unknown.append(index.query(perturb(img, "jpeg", rng), exclude=cid).score)
    print(f"\n{'query':<11} {'top-1':>7} {'median score':>13}")
    for kind, r in known.items():
        print(f"{kind:<11} {100 * sum(h for h, _ in r) / len(r):>6.1f}% {sorted(s for _, s in r)[len(r) // 2]:>13.3f}")
    print(f"{'unknown':<11} {'':>7} {sorted(unknown)[len(unknown) // 2]:>13.3f}   (max {max(unknown):.3f})")
    allk = [x for r in known.values() for x in r]
    print(f"\n{'threshold':>9} {'known: correct & accepted':>26} {'unknown: rejected':>18}")
    for th in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        acc = sum(h and s >= th for h, s in allk) / len(allk)
        rej = sum(s < th for s in unknown) / len(unknown)
        print(f"{th:>9.2f} {100 * acc:>25.1f}% {100 * rej:>17.1f}%")


if __name__ == "__main__":
    main()
