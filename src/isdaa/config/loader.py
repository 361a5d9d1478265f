"""The generic config machinery: any dataclass tree of `isdaa.config.schemas`, loaded from YAML plus dotted overrides.

`load_config(TrainConfig, path, overrides)` reads a YAML file with a safe loader, applies overrides such as
`("objective.beta", "0.01")`, checks every key against the dataclasses (unknown keys get a "did you mean"),
coerces values to the annotated types, checks each field's limit (stated next to the field, see
`isdaa.config.fields`) and raises `InputError` with one line on any problem. No config value is ever
evaluated as code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from isdaa.config.fields import CHECK, HELP
from isdaa.errors import InputError

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce_number(value, tp, key):
    if isinstance(value, bool):
        raise InputError(f"option {key}: expected a number, got {value!r}")
    try:
        out = tp(value) if tp is float else int(str(value), 10) if isinstance(value, str) else value
    except (TypeError, ValueError):
        raise InputError(f"option {key}: expected {_type_name(tp)}, got {value!r}") from None
    if tp is int and (not isinstance(out, int) or isinstance(out, float)):
        if isinstance(out, float) and out.is_integer():
            return int(out)
        raise InputError(f"option {key}: expected an integer, got {value!r}")
    if tp is float and not math.isfinite(out):
        raise InputError(f"option {key}: expected a finite number, got {value!r}")
    return out


def _coerce_container(value, tp, key):
    base = typing.get_origin(tp) or tp
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
        if base is list and isinstance(value, str):
            value = [v for v in value.split(",") if v]
    if not isinstance(value, base):
        raise InputError(f"option {key}: expected a {base.__name__}, got {value!r}")
    return value


def _coerce(value, tp, key):
    """Coerce a YAML/CLI value to the annotated type, or raise InputError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise InputError(f"option {key}: expected true or false, got {value!r}")
    if tp in (int, float):
        return _coerce_number(value, tp, key)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise InputError(f"option {key}: expected a string, got {value!r}")
        return str(value)
    if tp in (list, dict) or origin in (list, dict):
        return _coerce_container(value, tp, key)
    raise InputError(f"option {key}: unsupported type")  # pragma: no cover


def _unknown(key: str, choices) -> InputError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, list(choices), n=1, cutoff=0.6)
    hint = f" (did you mean '{key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}'?)" if close else ""
    return InputError(f"unknown config key '{key}'{hint}")


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise InputError(f"option {prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise _unknown(full, hints)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


def _validate(obj, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        full = f"{prefix}{f.name}"
        check = f.metadata.get(CHECK)
        if dataclasses.is_dataclass(value):
            _validate(value, f"{full}.")
        elif check is not None and value is not None:
            problem = check.problem(full, value)
            if problem is not None:
                raise InputError(f"option {problem}")


def _set_dotted(tree: dict, key: str, value) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file, read with the safe loader; InputError (file and line) on anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', None) or 'parse error'})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: expected a UTF-8 YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[tuple[str, Any]] | dict | None = None):
    """Build `cls` (TrainConfig, EvalConfig, ...) from an optional YAML file plus dotted overrides."""
    tree = read_yaml(path) if path else {}
    items = overrides.items() if isinstance(overrides, dict) else (overrides or [])
    for key, value in items:
        _set_dotted(tree, key, value)
    try:
        obj = _build(cls, tree)
    except InputError as exc:
        raise InputError(f"{path}: {exc}" if path else str(exc)) from None
    _validate(obj)
    return obj


def to_dict(obj) -> dict:
    """The config as plain nested dicts and lists (what config.yaml holds)."""
    return dataclasses.asdict(obj)


def config_yaml(obj) -> str:
    """The resolved config as YAML text, in field order (what a run's config.yaml holds)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def save_config(obj, path: str | Path) -> None:
    """Write the resolved config as YAML, in field order (not atomically: runs use
    `isdaa.training.runlog.write_run_config`)."""
    Path(path).write_text(config_yaml(obj), encoding="utf-8")


class OptionHelp(NamedTuple):
    """One row of `--help`: the dotted key, its type name, default, one-line help and limit ("" if none)."""

    key: str
    type: str
    default: Any
    help: str
    rule: str


def option_help(cls, prefix: str = "") -> list[OptionHelp]:
    """Every option of `cls` (nested sections flattened to dotted keys), in field order."""
    rows = []
    defaults = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(option_help(type(value), f"{prefix}{f.name}."))
            continue
        check = f.metadata.get(CHECK)
        rule = check.rule if check is not None else ""
        rows.append(OptionHelp(f"{prefix}{f.name}", _type_name(hints[f.name]), value, f.metadata.get(HELP, ""), rule))
    return rows

