"""`isdaa lab` / `isdaa demo [--config FILE] [--key value ...]`: a LabConfig (the packaged default.yaml or
demo.yaml, replaced by --config) -> `isdaa.lab.run_lab`."""

from __future__ import annotations

from isdaa.cli.argv import config_args, wants_help
from isdaa.cli.help import option_lines
from isdaa.config import LabConfig, option_help
from isdaa.errors import InputError
from isdaa.lab import DEFAULT_YAML, DEMO_YAML, load_lab_config, run_lab
from isdaa.lab.crossworld import write_comparison
from isdaa.lab.objective_rule import write_objective_comparison
from isdaa.lab.quick import quick_config


def _value_at(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def lab_help(packaged: LabConfig, demo: bool) -> str:
    """`isdaa lab --help` / `isdaa demo --help`: every LabConfig option, its default taken from `packaged`."""
    name = "demo" if demo else "lab"
    runs = f"the demo ({DEMO_YAML})" if demo else f"a lab sweep (default {DEFAULT_YAML})"
    lines = [f"usage: isdaa {name} [--config FILE] [--quick] [--key value ...]", "",
             f"Runs {runs}; a --config file replaces it. --quick: a smoke run of the same sweep (first method, beta "
             f"and seed, 10 steps of <= 4 pairs, 2 evaluations, <= 16 held-out prompts) in <output_dir>-quick.",
             "Options (dotted keys; YAML uses the same tree):"]
    for row in option_help(LabConfig):
        value = _value_at(packaged, row.key)
        many = isinstance(value, list) and value and isinstance(value[0], dict)
        lines += option_lines(row, f"[{len(value)} entries, see the YAML]" if many else repr(value))
    lines += ["", "methods: a list of {label: NAME, <objective option>: value, ...} (left out: the default sweep);",
              "regimes: a list of {name, n_pairs, max_steps or epochs, lr, batch_size, eval_every, <dotted train key>}",
              "(left out: the default regimes). The whole config is checked before anything is prepared or written."]
    return "\n".join(lines)


COMPARE_USAGE = ("usage: isdaa lab compare LAB_DIR [LAB_DIR ...] --out DIR [--note TEXT] [--regime NAME] "
                 "[--supplementary] [--rule weightings|objectives]")


def _option_value(args: list[str], name: str, what: str, default: str) -> tuple[str, list[str]]:
    """(the value of option `name` or `default`, the other arguments)."""
    if name not in args:
        return default, args
    j = args.index(name)
    if j + 1 >= len(args):
        raise InputError(f"option {name}: {what} is required ({COMPARE_USAGE})")
    return args[j + 1], args[:j] + args[j + 2:]


def compare_command(args: list[str]) -> int:
    """`isdaa lab compare DIR ... --out OUT`: the cross-world summary and the selection rule (isdaa.lab.crossworld)."""
    if wants_help(args):
        print(COMPARE_USAGE + "\n\nReads each LAB_DIR/results.json (one world each), applies docs/results/RULE.md and "
              "writes OUT/summary.md and OUT/summary.json. --regime: the regime compared (default few_pairs); "
              "--supplementary: runs outside the rule's design (no rule; the recommendation against DPO, IPO, chiPO). "
              "--rule objectives: the second rule (docs/results/RULE-objectives.md) over loss x weighting, the "
              "controlled worlds' few_pairs cells and the real-model cell; a world's runs may span directories.")
        return 0
    if "--out" not in args or args.index("--out") + 1 >= len(args):
        raise InputError(f"option --out: the output directory is required ({COMPARE_USAGE})")
    supplementary = "--supplementary" in args
    args = [a for a in args if a != "--supplementary"]
    note, args = _option_value(args, "--note", "a text", "")
    regime, args = _option_value(args, "--regime", "a regime name", "few_pairs")
    rule, args = _option_value(args, "--rule", "weightings or objectives", "weightings")
    if rule not in ("weightings", "objectives"):
        raise InputError(f"option --rule: expected weightings (docs/results/RULE.md) or objectives "
                         f"(docs/results/RULE-objectives.md), got {rule!r}")
    i = args.index("--out")
    directories, out = args[:i] + args[i + 2:], args[i + 1]
    if not directories:
        raise InputError(f"give at least one lab directory ({COMPARE_USAGE})")
    if rule == "objectives":
        path = write_objective_comparison(directories, out, note)
    else:
        path = write_comparison(directories, out, note, regime=regime, supplementary=supplementary)
    print(f"isdaa lab compare: wrote {path}")
    return 0


def lab_command(args: list[str], demo: bool = False) -> int:
    """`isdaa lab [--config FILE] [--key value ...]`; a --config file replaces the packaged default.yaml;
    `isdaa lab compare ...` compares lab directories."""
    if not demo and args and args[0] == "compare":
        return compare_command(args[1:])
    if wants_help(args):
        print(lab_help(load_lab_config(demo=demo), demo))
        return 0
    quick = "--quick" in args
    path, overrides = config_args([a for a in args if a != "--quick"])
    config = load_lab_config(path, overrides, demo=demo)
    run_lab(quick_config(config) if quick else config)
    return 0


def demo_command(args: list[str]) -> int:
    """`isdaa demo [...]`: the lab with the packaged demo.yaml."""
    return lab_command(args, demo=True)
