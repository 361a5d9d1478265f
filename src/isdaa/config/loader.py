"""The generic config machinery: any dataclass tree of `isdaa.config.schemas`, loaded from YAML plus dotted overrides.

`load_config(TrainConfig, path, overrides)` reads a YAML file with a safe loader, applies overrides such as
`("objective.beta", "0.01")`, checks every key against the dataclasses (unknown keys get a "did you mean"),
coerces values to the annotated types, checks each field's limit (stated next to the field, see
`isdaa.config.fields`) and raises `InputError` with one line on any problem, starting with where the value
came from ("command line: ..." or "FILE:LINE: ...", `isdaa.config.sources`). A mapping override is merged over
the file's mapping; a command-line value inside a mapping field (`--model.init.hidden_size 64`) is read as
YAML. No config value is ever evaluated as code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from isdaa.config.fields import CHECK, HELP
from isdaa.config.sources import COMMAND_LINE, CommandLine, NoValue, key_lines, suggest_keys
from isdaa.errors import InputError

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class ConfigKeyError(InputError):
    """A problem with the value of one config key (`key`, dotted); the message starts with "option <key>"."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class UnknownKeyError(ConfigKeyError):
    """A key that no config class field has."""

    def __init__(self, key: str):
        super().__init__(key, f"unknown config key '{key}'")


class MissingValueError(ConfigKeyError):
    """A command-line option given without a value (`NoValue`) that is not an on/off option."""

    def __init__(self, key: str, expected: str):
        super().__init__(key, f"option {key}: no value given (expected {expected})")
        self.expected = expected


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce_number(value, tp, key):
    if isinstance(value, bool):
        raise ConfigKeyError(key, f"option {key}: expected a number, got {value!r}")
    try:
        out = tp(value) if tp is float else int(str(value), 10) if isinstance(value, str) else value
    except (TypeError, ValueError):
        raise ConfigKeyError(key, f"option {key}: expected {_type_name(tp)}, got {value!r}") from None
    if tp is int and (not isinstance(out, int) or isinstance(out, float)):
        if isinstance(out, float) and out.is_integer():
            return int(out)
        raise ConfigKeyError(key, f"option {key}: expected an integer, got {value!r}")
    if tp is float and not math.isfinite(out):
        raise ConfigKeyError(key, f"option {key}: expected a finite number, got {value!r}")
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
        raise ConfigKeyError(key, f"option {key}: expected a {base.__name__}, got {value!r}")
    return value


def _coerce(value, tp, key):
    """Coerce a YAML/CLI value to the annotated type, or raise ConfigKeyError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        return _coerce(value, args[0], key)
    if isinstance(value, NoValue) and tp is not bool:
        raise MissingValueError(key, _type_name(tp))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigKeyError(key, f"option {key}: expected true or false, got {value!r}")
    if tp in (int, float):
        return _coerce_number(value, tp, key)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigKeyError(key, f"option {key}: expected a string, got {value!r}")
        return str(value)
    if tp in (list, dict) or origin in (list, dict):
        return _coerce_container(value, tp, key)
    raise ConfigKeyError(key, f"option {key}: unsupported type")  # pragma: no cover


def coerce(value, tp, key: str):
    """`value` as type `tp` (bool, int, float, str, list, dict, or an optional one), as the loader coerces every
    field: for callers that check values of their own (model.init); InputError naming `key` otherwise."""
    return _coerce(value, tp, key)


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        key = prefix.rstrip(".")
        raise ConfigKeyError(key, f"option {key or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise UnknownKeyError(full)
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
                raise ConfigKeyError(full, f"option {problem}")


def _inside_mapping_field(cls, key: str) -> bool:
    """Whether dotted `key` names an entry inside a mapping-valued field (`model.init.hidden_size`)."""
    for part in key.split(".")[:-1]:
        tp = typing.get_type_hints(cls).get(part)
        if tp is None:
            return False
        if not dataclasses.is_dataclass(tp):
            return dict in (tp, typing.get_origin(tp), *typing.get_args(tp))
        cls = tp
    return False


def _yaml_value(text: str):
    """A command-line value read as YAML reads it in a file (`64` -> 64, `[1, 2]` -> a list), numbers written
    like 1e-5 (a string to YAML 1.1) included."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
            return number if math.isfinite(number) else value
    return value


def _as_mapping(value) -> dict | None:
    """`value` as a mapping: itself, or a command-line string that YAML reads as one ("{hidden_size: 64}")."""
    if isinstance(value, str) and not isinstance(value, NoValue):
        value = _yaml_value(value)
    return value if isinstance(value, dict) else None


def _set_dotted(tree: dict, key: str, value) -> None:
    """Set `key` in the nested `tree`; a mapping over a mapping already there is merged into it (the file's
    `model.init` keeps the keys the override does not give)."""
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node[p] = _as_mapping(node.get(p)) or {}
        node = node[p]
    existing, mapping = _as_mapping(node.get(parts[-1])), _as_mapping(value)
    node[parts[-1]] = {**existing, **mapping} if existing is not None and mapping is not None else value


def _apply_overrides(cls, tree: dict, overrides, origins: dict) -> None:
    """Set each dotted override in `tree`, recording where it came from in `origins` (key -> "command line", or
    None for overrides passed as a dict or list). A command-line value inside a mapping field is read as YAML."""
    from_command_line = isinstance(overrides, CommandLine)
    items = overrides.items() if isinstance(overrides, dict) else (overrides or [])
    for key, value in items:
        if from_command_line and _inside_mapping_field(cls, key):
            if isinstance(value, NoValue):
                raise MissingValueError(key, "a value")
            value = _yaml_value(value) if isinstance(value, str) else value
        _set_dotted(tree, key, value)
        origins[key] = COMMAND_LINE if from_command_line else None


def _origin(key: str, origins: dict) -> str | None:
    """Where the value at `key` (or at the nearest key enclosing it) came from: "command line", "FILE:LINE", or
    None (defaults, overrides passed as a dict or list)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        enclosing = ".".join(parts[:n])
        if enclosing in origins:
            return origins[enclosing]
    return None


def _option_names(cls) -> list[str]:
    """Every dotted option of `cls` and every section name (what an unknown key is compared with)."""
    keys = [row.key for row in option_help(cls)]
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    return keys + sorted(sections)


def _did_you_mean(names: list[str], command_line: CommandLine | None) -> str:
    """`--a or --b` (an alias shown with what it stands for) on the command line, `'a' or 'b'` in a file."""
    if command_line is None:
        return " or ".join(f"'{n}'" for n in names)
    aliases = command_line.aliases
    return " or ".join(f"--{n} (= --{aliases[n]})" if n in aliases else f"--{n}" for n in names)


def _located(problem: ConfigKeyError, cls, origins: dict, command_line: CommandLine | None) -> str:
    """The one-line message of `problem`, starting with where its value came from."""
    where = _origin(problem.key, origins)
    cli = command_line if where == COMMAND_LINE else None
    spelled = cli.spelled(problem.key) if cli else f"--{problem.key}"
    if isinstance(problem, UnknownKeyError):
        names = suggest_keys(problem.key, _option_names(cls), cli.aliases if cli else None)
        if cli:
            hint = f"; did you mean {_did_you_mean(names, cli)}?" if names else "; --help lists every option"
            return f"{COMMAND_LINE}: unknown option {spelled}{hint}"
        message = f"{problem}" + (f" (did you mean {_did_you_mean(names, None)}?)" if names else "")
    elif isinstance(problem, MissingValueError) and cli:
        return f"{COMMAND_LINE}: option {spelled}: no value given (expected {problem.expected} after it)"
    else:
        message = f"{problem}" + (f" (given as {spelled})" if cli and spelled != f"--{problem.key}" else "")
    return f"{where}: {message}" if where else message


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
    """Build `cls` (TrainConfig, EvalConfig, ...) from an optional YAML file plus dotted overrides (a
    `CommandLine` from argv, or a dict / list of (key, value) pairs). An error names where the bad value came
    from: "command line: ..." or "FILE:LINE: ...". A mapping override is merged over the file's mapping."""
    tree = read_yaml(path) if path else {}
    origins: dict[str, str | None] = {k: f"{path}:{line}" for k, line in key_lines(path).items()} if path else {}
    try:
        _apply_overrides(cls, tree, overrides, origins)
        obj = _build(cls, tree)
        _validate(obj)
    except ConfigKeyError as problem:
        command_line = overrides if isinstance(overrides, CommandLine) else None
        raise InputError(_located(problem, cls, origins, command_line)) from None
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

