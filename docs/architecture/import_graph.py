"""Draw museumtok's import graph: which part of the package imports which.

    .venv/bin/python docs/architecture/import_graph.py            # counts, cycles, the rooms with most arrows
    .venv/bin/python docs/architecture/import_graph.py --dot docs/architecture/imports.dot

A *room* is a top-level module (``museumtok/paths.py``) or subpackage (``museumtok/llm/``); an *arrow* is
"some module of room A imports some module of room B" (A ≠ B), counted once. Cycles are reported between
modules (files), where an import circle is a real problem. Imports are read with ``ast`` (nothing is
executed), including the ones inside functions (a lazy import is still a dependency).
"""
from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "museumtok"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, mod: str, known: set[str]) -> set[str]:
    """The museumtok modules that ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: set[str] = set()

    def add(name: str):
        while name and name not in known:           # `from .x import y`: y may be a name, not a module
            name = name.rsplit(".", 1)[0] if "." in name else ""
        if name and name != mod:
            out.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("museumtok"):
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("museumtok"):
                continue
            for a in node.names:
                add(f"{target}.{a.name}")
    return out


def room(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    known = set(files)
    return {m: imports_of(p, m, known) for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring package __init__ re-exports."""
    g = {m: {d for d in ds if not _is_pkg(d, g)} for m, ds in g.items() if not _is_pkg(m, g)}
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _is_pkg(mod: str, g) -> bool:
    return (PKG.parent / mod.replace(".", "/") / "__init__.py").exists()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dot", type=Path, default=None, help="also write the room graph as Graphviz dot")
    a = p.parse_args(argv)
    g = graph()
    arrows: dict[str, set[str]] = defaultdict(set)
    for m, ds in g.items():
        for d in ds:
            if room(m) != room(d) and room(d) != "museumtok":
                arrows[room(m)].add(room(d))
    rooms = {room(m) for m in g} - {"museumtok"}
    n_arrows = sum(len(v) for v in arrows.values())
    print(f"{len(g)} modules, {len(rooms)} rooms, {n_arrows} arrows between rooms")
    cyc = cycles(g)
    print(f"import circles between modules: {len(cyc)}")
    for c in cyc:
        print("  " + " ↔ ".join(c))
    fan_in = defaultdict(int)
    for v in arrows.values():
        for d in v:
            fan_in[d] += 1
    print("rooms (imports out / imported by):")
    for r in sorted(rooms, key=lambda r: -(len(arrows[r]) + fan_in[r])):
        print(f"  {r:32s} {len(arrows[r]):3d} / {fan_in[r]:3d}")
    if a.dot:
        lines = ["digraph museumtok {", "  rankdir=LR; node [shape=box, fontsize=10];"]
        lines += [f'  "{s}" -> "{d}";' for s in sorted(arrows) for d in sorted(arrows[s])]
        a.dot.write_text("\n".join(lines + ["}"]) + "\n")
        print(f"wrote {a.dot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
