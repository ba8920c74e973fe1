"""The method → file map: for every method in the registry, where its quantizer, network, tokenizer or
codec class, trainer, registry entries and notebook live. Generated from the code, so it stays true.

    .venv/bin/python docs/architecture/method_map.py            # print the table
    .venv/bin/python docs/architecture/method_map.py --write    # rewrite docs/architecture/methods.md

Read from: the registry (each entry's ``target`` class and chapter), the class's network (``model_cls`` of
the autoencoder tokenizers; the target itself for codecs and generators), the quantizers that network's
module imports (``ast``, nothing executed), the trainers (``museumtok train <name>``: the one whose name
starts the entry's name) and the notebooks (the chapter's ``notebooks/NN_M_*.py``).
``tests/test_architecture.py`` fails when methods.md and this output differ.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import sys
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "architecture" / "methods.md"
TRAINER_ALIASES = {"ar": "maskgit"}          # the AR twin is trained by `museumtok train maskgit --causal`


def rel(path: str | Path) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def module_file(module: str) -> str:
    spec = importlib.util.find_spec(module)
    return rel(spec.origin)


def _imports(module: str) -> set[str]:
    """museumtok modules that ``module`` imports (relative imports resolved; read with ast)."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))
    pkg = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            if not base.startswith("museumtok"):
                continue
            for a in node.names:
                n = f"{base}.{a.name}"
                if _is_module(n):
                    found.add(n)
                elif _is_module(base):                   # a name: the module that defines it (re-exports)
                    obj = getattr(importlib.import_module(base), a.name, None)
                    home = getattr(obj, "__module__", None) or base
                    found.add(home if _is_module(home) else base)
    return found


def _is_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):            # "pkg.module.function": not a module
        return False
    return spec is not None and bool(spec.origin) and spec.origin.endswith(".py")


def quantizers_of(module: str) -> list[str]:
    """The quantizer (museumtok.quantize) or entropy-model (museumtok.entropy) files behind a network: those
    its module imports, and those of the museumtok.models / codecs modules it builds on (one level)."""
    seen = _imports(module)
    for m in list(seen):
        if m.startswith(("museumtok.models.", "museumtok.codecs.")) and m != module:
            seen |= _imports(m)
    keep = {module_file(m) for m in seen if m.startswith(("museumtok.quantize.", "museumtok.entropy."))
            and m != "museumtok.quantize.output"}          # output.py: the one return type all share
    return sorted(k for k in keep if not k.endswith("__init__.py"))


def network_of(entry) -> tuple[str | None, str | None]:
    """(module of the network class, its name) behind a registry entry."""
    module, name = entry.target.split(":")
    obj = getattr(importlib.import_module(module), name)
    net = getattr(obj, "model_cls", None)
    if inspect.isclass(net):
        return net.__module__, net.__name__
    if inspect.isclass(obj) and issubclass(obj, __import__("torch").nn.Module):
        return module, name
    return None, None


def trainer_for(name: str, trainers: dict) -> str | None:
    head = name.split("-")[0]
    head = TRAINER_ALIASES.get(head, head)
    best = [t for t in trainers if name.startswith(t) or t == head]
    return max(best, key=len) if best else None


def notebook_for(chapter: str, names: list[str]) -> list[str]:
    """The chapter's notebooks that use the method (by class or entry name), else the chapter's own."""
    major, _, minor = chapter.partition(".")
    same_major = sorted((ROOT / "notebooks").glob(f"{int(major):02d}_*.py"))
    using = [rel(p) for p in same_major if any(n in p.read_text(encoding="utf-8") for n in names)]
    own = sorted((ROOT / "notebooks").glob(f"{int(major):02d}_{minor}_*.py" if minor else f"{int(major):02d}_*.py"))
    return using or [rel(p) for p in own]


def rows() -> list[dict]:
    from museumtok import registry
    from museumtok.train import load_trainers

    trainers = load_trainers()
    groups: "OrderedDict[tuple, dict]" = OrderedDict()
    for e in sorted(registry.entries(), key=lambda e: (tuple(int(x) for x in e.chapter.split(".")), e.name)):
        key = (e.chapter, e.target)
        g = groups.setdefault(key, {"chapter": e.chapter, "kind": e.kind, "target": e.target, "entries": []})
        g["entries"].append(e)
    out = []
    for (chapter, target), g in groups.items():
        module, cls = target.split(":")
        net_mod, net_cls = network_of(g["entries"][0])
        names = [e.name for e in g["entries"]]
        tr = sorted({t for n in names if (t := trainer_for(n, trainers))})
        out.append({
            "chapter": chapter, "kind": g["kind"], "class": f"{cls} ({module_file(module)})",
            "network": f"{net_cls} ({module_file(net_mod)})" if net_mod and net_mod != module else "—",
            "quantizer": ", ".join(quantizers_of(net_mod or module)),
            "trainer": ", ".join(f"`museumtok train {t}` ({module_file(trainers[t].fn.__module__)})" for t in tr)
                       or ("— (published weights)" if all(e.weights for e in g["entries"]) else "— (no training)"),
            "entries": ", ".join(names), "notebook": ", ".join(notebook_for(chapter, [cls] + names)) or "—",
        })
    return out


def markdown() -> str:
    lines = ["# Where each method lives",
             "",
             "Generated by `docs/architecture/method_map.py --write` from the registry, the trainers and the "
             "notebooks; `tests/test_architecture.py` checks that it is current.",
             "",
             "| § | kind | tokenizer / codec class | network | quantizer / entropy model | trainer | registry entries | notebook |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows():
        lines.append(f"| {r['chapter']} | {r['kind']} | {r['class']} | {r['network']} | {r['quantizer'] or '—'} | "
                     f"{r['trainer'] or '—'} | {r['entries']} | {r['notebook']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true", help=f"rewrite {rel(OUT)}")
    a = p.parse_args(argv)
    text = markdown()
    if a.write:
        OUT.write_text(text)
        print(f"wrote {rel(OUT)}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
