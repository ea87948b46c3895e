"""Config dataclasses: one per entry point, documented fields, validation, YAML, CLI.

Every entry point declares a frozen dataclass whose fields carry their documentation in
``field(metadata={"help": ...})`` and whose ``__post_init__`` validates values. This module
turns such a class into command-line flags, reads YAML files for it (unknown keys are errors),
applies ``key=value`` overrides and writes the resolved config next to outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from llark.errors import ConfigError

T = TypeVar("T")

#: Config fields whose values are secrets (matched against the field name). Configs should hold
#: the NAME of an environment variable instead (``api_key_env``), which is never redacted.
SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")


def doc(help_text: str, **kwargs: Any) -> Any:
    """A dataclass field with documentation (``default`` or ``default_factory`` in kwargs)."""
    return dataclasses.field(metadata={"help": help_text}, **kwargs)


def _base_type(tp: Any) -> Any:
    """Strip ``Optional[...]`` / ``X | None`` to ``X``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a YAML or command-line value to the declared field type."""
    if value is None:
        return None
    base = _base_type(tp)
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"not an integer: {value!r}")
            return base(value)
        if origin in (tuple, list):
            (item_tp, *_) = typing.get_args(base) or (str,)
            items = value.split(",") if isinstance(value, str) else list(value)
            items = [i.strip() if isinstance(i, str) else i for i in items]
            return tuple(_coerce(name, item_tp, i) for i in items if i != "")
        if origin is dict:
            if isinstance(value, str):
                value = json.loads(value)
            return dict(value)
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config key {name!r}: cannot read {value!r} as {base}: {exc}") from exc
    return value


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        f.type = hints[f.name]
        out[f.name] = f
    return out


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping; unknown keys raise :class:`ConfigError`."""
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}"
        )
    kwargs = {k: _coerce(k, fields[k].type, v) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``; anything else is an error."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field (defaults stay ``None`` = not given)."""
    for name, f in config_fields(cls).items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")   # argparse %-formats help
        default = _default_text(f)
        if default is not None:
            help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        if _base_type(f.type) is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def _default_text(f: dataclasses.Field) -> str | None:
    """A field's default as ``--help`` shows it (``%`` escaped for argparse); None if required."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if isinstance(value, (tuple, list)):
        text = ",".join(map(str, value)) or "none"
    elif value == "":
        text = "none"
    else:
        text = str(value)
    return text.replace("%", "%%")


def from_args(cls: type[T], ns: argparse.Namespace, yaml_path: str | None = None,
              overrides: list[str] | None = None) -> T:
    """Resolve: dataclass defaults < YAML file < flags < ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if yaml_path:
        values.update(load_yaml(yaml_path))
    for name in config_fields(cls):
        given = getattr(ns, name, None)
        if given is not None:
            values[name] = given
    values.update(parse_overrides(overrides or []))
    return from_dict(cls, values, source=yaml_path or "command line")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data, with secret-looking values redacted."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, tuple):
            value = list(value)
        if value and any(m in f.name.lower() for m in SECRET_MARKERS) and not f.name.endswith("_env"):
            value = "<redacted>"
        out[f.name] = value
    return out
