"""Training scripts behind ``museumtok train <name>``.

Each module in this package registers its trainer with :func:`register_trainer`: a config
dataclass (one comment per field) and a function ``train(cfg, command) -> checkpoint folder``.
The CLI turns every config field into a ``--field`` option and also reads ``--config file.json``.
The library never imports this package; only the CLI and notebooks do.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
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


def _field_type(cls, f: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    return hints.get(f.name, str)


def _coerce(tp, value: str):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(args[0], value)
    if origin in (tuple, list):
        inner = args[0] if args else str
        parts = [p for p in value.split(",") if p.strip()]
        out = [_coerce(inner, p.strip()) for p in parts]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if tp in (int, float, str):
        return tp(value)
    return value


def add_config_arguments(parser, config_cls) -> None:
    parser.add_argument("--config", type=Path, help="JSON file with config fields (options below override it)")
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        flag = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}   # `--resume` = `--resume true`
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", default=None,
                            metavar=type(default).__name__.upper() if default is not None else "VALUE",
                            help=f"(default: {default})", **flag)


def config_from_args(config_cls, args) -> Any:
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        data = json.loads(Path(args.config).read_text())
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)} for {config_cls.__name__}")
        for f in dataclasses.fields(config_cls):
            if f.name in data:
                v = data[f.name]
                values[f.name] = tuple(v) if isinstance(v, list) else v
    for f in dataclasses.fields(config_cls):
        raw = getattr(args, f"cfg_{f.name}", None)
        if raw is not None:
            values[f.name] = _coerce(_field_type(config_cls, f), raw)
    return config_cls(**values)
