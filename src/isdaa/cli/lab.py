"""`isdaa lab` / `isdaa demo [--config FILE] [--key value ...]`: a LabConfig (the packaged default.yaml or
demo.yaml, replaced by --config) -> `isdaa.lab.run_lab`."""

from __future__ import annotations

from isdaa.cli.argv import config_args, wants_help
from isdaa.cli.help import option_lines
from isdaa.config import LabConfig, option_help
from isdaa.lab import DEFAULT_YAML, DEMO_YAML, load_lab_config, run_lab


def _value_at(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def lab_help(packaged: LabConfig, demo: bool) -> str:
    """`isdaa lab --help` / `isdaa demo --help`: every LabConfig option, its default taken from `packaged`."""
    name = "demo" if demo else "lab"
    runs = f"the demo ({DEMO_YAML})" if demo else f"a lab sweep (default {DEFAULT_YAML})"
    lines = [f"usage: isdaa {name} [--config FILE] [--key value ...]", "",
             f"Runs {runs}; a --config file replaces it. Options (dotted keys; YAML uses the same tree):"]
    for row in option_help(LabConfig):
        value = _value_at(packaged, row.key)
        many = isinstance(value, list) and value and isinstance(value[0], dict)
        lines += option_lines(row, f"[{len(value)} entries, see the YAML]" if many else repr(value))
    lines += ["", "methods: a list of {label: NAME, <objective option>: value, ...} (empty: the default sweep);",
              "regimes: a list of {name, n_pairs, max_steps or epochs, lr, batch_size, eval_every, <dotted train key>}."]
    return "\n".join(lines)


def lab_command(args: list[str], demo: bool = False) -> int:
    """`isdaa lab [--config FILE] [--key value ...]`; a --config file replaces the packaged default.yaml."""
    if wants_help(args):
        print(lab_help(load_lab_config(demo=demo), demo))
        return 0
    path, overrides = config_args(args)
    run_lab(load_lab_config(path, overrides, demo=demo))
    return 0


def demo_command(args: list[str]) -> int:
    """`isdaa demo [...]`: the lab with the packaged demo.yaml."""
    return lab_command(args, demo=True)
