"""The texts `isdaa ... --help` prints: the command list and every option of a command with its type,
default, one-line help and limit (read from the config schemas, `isdaa.config.option_help`)."""

from __future__ import annotations

from isdaa.config import LabConfig, OptionHelp, option_help
from isdaa.lab import DEFAULT_YAML, DEMO_YAML
from isdaa.modeling.prepare import MODELS

USAGE = """usage: isdaa <command> [--config FILE] [--key value ...]

commands:
  train   train a policy with a DAA objective (optionally importance-weighted)
  eval    sample from a policy, score with a gold scorer, estimate KL to a reference
  lab     run the over-optimization lab sweep (methods x beta x seeds in a controlled world)
  demo    the lab's demo subset (the main job; <= 10 minutes on 2 CPU cores)
  pairs   sample completions from a model, score them with a gold scorer, write labelled TRL pairs
  models  prepare a real pretrained model offline (isdaa models prepare smollm2)

`isdaa <command> --help` lists every option with its default.
"""

MODELS_USAGE = """usage: isdaa models <list | prepare NAME | path NAME> [--cache-dir DIR] [--force]

  list           known models, and where each is prepared (if it is)
  prepare NAME   convert NAME once into <cache>/models/ and print the directory (reused afterwards)
  path NAME      print the directory NAME is (or would be) prepared in

<cache> is --cache-dir, else $ISDAA_CACHE, else ~/.cache/isdaa. Models: """ + ", ".join(MODELS)


def _option_lines(row: OptionHelp, shown: str) -> list[str]:
    limit = f"; must be {row.rule}" if row.rule else ""
    return [f"  --{row.key:<34} {row.type:<6} default: {shown}", f"      {row.help}{limit}"]


def config_help(command: str, cls, aliases: dict | None = None) -> str:
    """`isdaa <command> --help`: every option of the config class `cls`, then the short aliases."""
    lines = [f"usage: isdaa {command} [--config FILE] [--key value ...]", "", "options (dotted keys; YAML uses the same tree):"]
    for row in option_help(cls):
        lines += _option_lines(row, repr(row.default))
    if aliases:
        lines += ["", "short aliases:"] + [f"  --{a.replace('_', '-'):<20} = --{k}" for a, k in aliases.items()]
    return "\n".join(lines)


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
        lines += _option_lines(row, f"[{len(value)} entries, see the YAML]" if many else repr(value))
    lines += ["", "methods: a list of {label: NAME, <objective option>: value, ...} (empty: the default sweep);",
              "regimes: a list of {name, n_pairs, max_steps or epochs, lr, batch_size, eval_every, <dotted train key>}."]
    return "\n".join(lines)
