"""Where a config value came from, so that an error can say so: the command line (`CommandLine`, what
`isdaa.cli.argv` reads from argv) or a line of the YAML file (`key_lines`), and the "did you mean" of an
unknown key (`suggest_keys`: close spellings, the same option name in another section, the short aliases).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

COMMAND_LINE = "command line"


class NoValue(str):
    """The value of a command-line option given without one (`--lora` as the last argument, or followed by
    another `--option`): it reads "true", which an on/off option accepts; any other option refuses it."""

    def __new__(cls, text: str = "true"):  # (the argument: what copy and pickle pass back)
        return super().__new__(cls, text)


class CommandLine(list):
    """Dotted overrides read from argv: (key, value) pairs, in order, with how each key was typed (`--is-eps`
    for objective.is_eps) and the short aliases the command line accepts (for "did you mean")."""

    def __init__(self, pairs=(), typed: dict[str, str] | None = None, aliases: dict[str, str] | None = None):
        super().__init__(pairs)
        self.typed = dict(typed or {})
        self.aliases = dict(aliases or {})

    def spelled(self, key: str) -> str:
        """The option as the user typed it (`--is-eps`), else `--<key>`."""
        return self.typed.get(key, f"--{key}")


def key_lines(path: str | Path) -> dict[str, int]:
    """The line (1-based) of every mapping key of a YAML file, by dotted key: {"objective.beta": 7, ...}.
    Empty when the file cannot be composed (read_yaml has reported that already)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                dotted = f"{prefix}{key_node.value}"
                lines.setdefault(dotted, key_node.start_mark.line + 1)
                walk(value_node, f"{dotted}.")

    walk(root, "")
    return lines


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def suggest_keys(key: str, paths: list[str], aliases: dict[str, str] | None = None) -> list[str]:
    """The options an unknown `key` probably meant (dotted paths, or alias names when `aliases` are given), best
    first: the options whose last part is the key's last part (`stop_at_kl` -> monitor.stop_at_kl, `optim.beta`
    -> objective.beta), else the closest spelling among full paths, aliases and last parts (`los` -> the alias
    `loss`, `monitor.evry` -> monitor.every)."""
    aliases = aliases or {}
    same_leaf = [p for p in paths if _leaf(p) == _leaf(key)]
    if same_leaf:
        return same_leaf[:3]
    names: dict[str, list[str]] = {}
    for p in paths:
        names.setdefault(_leaf(p), []).append(p)
    names.update({p: [p] for p in paths})
    names.update({a: [a] for a in aliases})
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    if not close and "." in key:
        close = difflib.get_close_matches(_leaf(key), [n for n in names if "." not in n], n=1, cutoff=0.6)
    return names[close[0]][:3] if close else []
