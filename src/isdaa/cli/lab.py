"""`isdaa lab` / `isdaa demo [--config FILE] [--key value ...]`: a LabConfig (the packaged default.yaml or
demo.yaml, replaced by --config) -> `isdaa.lab.run_lab`."""

from __future__ import annotations

from isdaa.cli.argv import config_args, wants_help
from isdaa.cli.help import option_lines
from isdaa.config import LabConfig, option_help
from isdaa.errors import InputError
from isdaa.lab import DEFAULT_YAML, DEMO_YAML, load_lab_config, run_lab
from isdaa.lab.crossworld import write_comparison


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


COMPARE_USAGE = "usage: isdaa lab compare LAB_DIR [LAB_DIR ...] --out DIR [--note TEXT]"


def compare_command(args: list[str]) -> int:
    """`isdaa lab compare DIR ... --out OUT`: the cross-world summary and the selection rule (isdaa.lab.crossworld)."""
    if wants_help(args):
        print(COMPARE_USAGE + "\n\nReads each LAB_DIR/results.json (one world each), applies docs/results/RULE.md and "
              "writes OUT/summary.md and OUT/summary.json.")
        return 0
    if "--out" not in args or args.index("--out") + 1 >= len(args):
        raise InputError(f"option --out: the output directory is required ({COMPARE_USAGE})")
    note = ""
    if "--note" in args:
        j = args.index("--note")
        if j + 1 >= len(args):
            raise InputError(f"option --note: a text is required ({COMPARE_USAGE})")
        note, args = args[j + 1], args[:j] + args[j + 2:]
    i = args.index("--out")
    directories, out = args[:i] + args[i + 2:], args[i + 1]
    if not directories:
        raise InputError(f"give at least one lab directory ({COMPARE_USAGE})")
    print(f"isdaa lab compare: wrote {write_comparison(directories, out, note)}")
    return 0


def lab_command(args: list[str], demo: bool = False) -> int:
    """`isdaa lab [--config FILE] [--key value ...]`; a --config file replaces the packaged default.yaml;
    `isdaa lab compare ...` compares lab directories."""
    if not demo and args and args[0] == "compare":
        return compare_command(args[1:])
    if wants_help(args):
        print(lab_help(load_lab_config(demo=demo), demo))
        return 0
    path, overrides = config_args(args)
    run_lab(load_lab_config(path, overrides, demo=demo))
    return 0


def demo_command(args: list[str]) -> int:
    """`isdaa demo [...]`: the lab with the packaged demo.yaml."""
    return lab_command(args, demo=True)
