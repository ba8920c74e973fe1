"""Training scripts behind ``museumtok train <name>``.

Each module in this package registers its trainer with :func:`register_trainer`: a config
dataclass (one comment per field) and a function ``train(cfg, command) -> checkpoint folder``.
The gradient trainers run their steps through :class:`museumtok.train.harness.Harness` (time limit,
schedule, resume, device and precision, logs); those with a model card end with
:func:`museumtok.train.harness.save_with_card`: all of them, ``sft`` and ``formats`` (a frozen LLM with
adapters; ``trainable_only`` state) included. ``lloyd-patch`` is k-means (no optimizer: its loop is
:func:`museumtok.quantize.lloyd.fit_codebook`) and shares only ``save_with_card``.

A training config may nest its model's config (``VQVAETrainConfig.model: VQVAEConfig``). The CLI turns
every field into an option, nested ones as ``--model.f 16`` with the flat ``--f 16`` kept as an alias
(where no top-level field has that name), and also reads ``--config file.json`` (nested or flat keys).
``--help`` shows each field's trailing ``# comment`` from the dataclass source.
The library never imports this package; only the CLI and notebooks do.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import io
import json
import pkgutil
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Trainer:
    name: str
    config_cls: type
    fn: Callable[[Any, str], Path]
    help: str


TRAINERS: dict[str, Trainer] = {}


def register_trainer(name: str, config_cls: type, help: str = ""):
    def deco(fn):
        TRAINERS[name] = Trainer(name, config_cls, fn, help or (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def load_trainers() -> dict[str, Trainer]:
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
    return TRAINERS


# ---- field comments from the dataclass source ---------------------------------------------------
@functools.lru_cache(maxsize=None)
def _own_comments(cls: type) -> dict[str, str]:
    """{field: its trailing ``# comment``} for the fields ``cls`` itself declares (continuation lines that
    hold only a comment, right under the field, are appended)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    body = ast.parse(src).body[0].body
    out: dict[str, str] = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = body[i + 1].lineno if i + 1 < len(body) else len(lines) + 1
        parts = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        for n in range(node.end_lineno + 1, end):   # comment-only lines indented past the field continue it
            line = lines[n - 1]
            if n in comments and line.strip().startswith("#") and len(line) - len(line.lstrip()) > node.col_offset:
                parts.append(comments[n])
            else:
                break
        if parts:
            out[node.target.id] = " ".join(parts)
    return out


def field_comments(cls: type) -> dict[str, str]:
    """{field: comment} for every field of the dataclass ``cls``, inherited ones included."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            out.update(_own_comments(base))
    return out


# ---- nested model configs ------------------------------------------------------------------------
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _nested(cls) -> dict[str, type]:
    """{field name: dataclass type} for the fields of ``cls`` that are themselves dataclasses (a model config)."""
    return {f.name: tp for f in dataclasses.fields(cls)
            if isinstance(tp := _hints(cls).get(f.name), type) and dataclasses.is_dataclass(tp)}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _options(cls) -> list[tuple[str, str, Any, Any, str, list[str]]]:
    """(path, field name, type, default, comment, alias option strings) for every option of ``cls``:
    top-level fields, then each nested config's fields as ``<nest>.<field>`` (flat alias when free)."""
    top = {f.name for f in dataclasses.fields(cls)}
    nested = _nested(cls)
    notes, hints = field_comments(cls), _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in nested:
            continue
        rows.append((f.name, f.name, hints.get(f.name, str), _default(f), notes.get(f.name, ""), []))
    for nest, ncls in nested.items():
        default_obj = _default(next(f for f in dataclasses.fields(cls) if f.name == nest))
        nnotes, nhints = field_comments(ncls), _hints(ncls)
        for f in dataclasses.fields(ncls):
            if not f.init:
                continue
            alias = [] if f.name in top else [f"--{f.name.replace('_', '-')}"]
            rows.append((f"{nest}.{f.name}", f.name, nhints.get(f.name, str), getattr(default_obj, f.name, _default(f)),
                         nnotes.get(f.name, ""), alias))
    return rows


def build_config(config_cls, values: dict[str, Any]) -> Any:
    """``config_cls`` from ``values``: top-level fields, nested configs as dicts or ``"model.f"`` keys, and
    flat names of nested fields (``f`` for ``model.f``) where no top-level field has that name."""
    top = {f.name: f for f in dataclasses.fields(config_cls)}
    nested = _nested(config_cls)
    kw: dict[str, Any] = {}
    sub: dict[str, dict[str, Any]] = {n: {} for n in nested}
    owner = {name: nest for nest, ncls in nested.items() for name in (f.name for f in dataclasses.fields(ncls))}
    for key, v in values.items():
        v = tuple(v) if isinstance(v, list) else v
        if "." in key:
            nest, name = key.split(".", 1)
            if nest not in nested:
                raise ValueError(f"unknown config field {key!r} for {config_cls.__name__}")
            sub[nest][name] = v
        elif key in nested and isinstance(v, dict):
            sub[key].update({k: tuple(x) if isinstance(x, list) else x for k, x in v.items()})
        elif key in top:
            kw[key] = v
        elif key in owner:
            sub[owner[key]][key] = v
        else:
            raise ValueError(f"unknown config fields {[key]} for {config_cls.__name__}")
    for nest, changes in sub.items():
        if changes:
            known = {f.name for f in dataclasses.fields(nested[nest])}
            if set(changes) - known:
                raise ValueError(f"unknown fields {sorted(set(changes) - known)} of {nested[nest].__name__}")
            kw[nest] = dataclasses.replace(kw.get(nest) or _default(top[nest]), **changes)
    return config_cls(**kw)


def nested_config(cls):
    """Class decorator for a training config with a nested model config: its constructor (and so
    :func:`dataclasses.replace`) also takes the flat names of the nested fields, applied on top of the
    nested default or the nested object passed — ``DVAETrainConfig(kl_weight=1e-3, steps=100)`` is
    ``DVAETrainConfig(model=DVAEConfig(kl_weight=1e-3, …), steps=100)``. Reads go through ``cfg.model``."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kw):
        top = {f.name: f for f in dataclasses.fields(cls)}
        sub: dict[str, dict[str, Any]] = {}
        for key in [k for k in kw if k not in top]:
            owner = next((n for n, ncls in _nested(cls).items()
                          if key in {f.name for f in dataclasses.fields(ncls)}), None)
            if owner is not None:
                sub.setdefault(owner, {})[key] = kw.pop(key)
        for nest, changes in sub.items():
            kw[nest] = dataclasses.replace(kw[nest] if kw.get(nest) is not None else _default(top[nest]), **changes)
        init(self, *args, **kw)

    cls.__init__ = __init__
    return cls


# ---- argparse --------------------------------------------------------------------------------
def _coerce(tp, value: str):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(args[0], value)
    if origin in (tuple, list) or tp in (tuple, list):
        inner = args[0] if args else (int if all(p.strip().lstrip("-").isdigit() for p in value.split(",") if p.strip())
                                      else str)
        parts = [p for p in value.split(",") if p.strip()]
        out = [_coerce(inner, p.strip()) for p in parts]
        return list(out) if origin is list or tp is list else tuple(out)
    if tp is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if tp in (int, float, str):
        return tp(value)
    return value


def _metavar(tp, default) -> str:
    """INT, FLOAT, STR, BOOL or TUPLE from the default, else from the annotation (``str | None`` -> STR)."""
    if default is not None:
        return type(default).__name__.upper()
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    t = typing.get_origin(args[0]) or args[0] if args else tp
    return getattr(t, "__name__", "value").upper()


def _dest(path: str) -> str:
    return "cfg_" + path.replace(".", "__")


def add_config_arguments(parser, config_cls) -> None:
    """One ``--field`` option per config field (``--model.field`` for a nested model config, with the flat
    ``--field`` alias); its help is the field's source comment and default."""
    parser.add_argument("--config", type=Path, help="JSON file with config fields (options below override it)")
    groups: dict[str, Any] = {}
    for path, name, tp, default, note, aliases in _options(config_cls):
        nest = path.split(".")[0] if "." in path else None
        target = parser
        if nest:
            if nest not in groups:
                about = field_comments(config_cls).get(nest, "")
                groups[nest] = parser.add_argument_group(
                    f"{nest} ({_nested(config_cls)[nest].__name__})",
                    (f"{about}. " if about else "") + f"Each also accepted without the '{nest}.' prefix "
                    "where no option above has its name.")
            target = groups[nest]
        flag = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}   # `--resume` = `--resume true`
        metavar = _metavar(tp, default)
        help_text = f"{note} (default: {default})" if note else f"(default: {default})"
        target.add_argument(f"--{path.replace('_', '-')}", dest=_dest(path), default=None, metavar=metavar,
                            help=help_text.replace("%", "%%"), **flag)
        for a in aliases:
            target.add_argument(a, dest=_dest(path), default=None, help=argparse.SUPPRESS, **flag)


def config_from_args(config_cls, args) -> Any:
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(json.loads(Path(args.config).read_text()))
    for path, name, tp, default, note, aliases in _options(config_cls):
        raw = getattr(args, _dest(path), None)
        if raw is not None:
            values[path] = _coerce(tp, raw)
    return build_config(config_cls, values)
