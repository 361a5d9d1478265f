"""The texts `isdaa ... --help` prints: the command list and every option of a command with its type,
default, one-line help and limit (read from the config schemas, `isdaa.config.option_help`)."""

from __future__ import annotations

from isdaa.cli.argv import ALIASES
from isdaa.config import EvalConfig, OptionHelp, PairsConfig, TrainConfig, option_help

USAGE = """usage: isdaa <command> [--config FILE] [--key value ...]

commands:
  train   train a policy with a DAA objective (optionally importance-weighted)
  eval    sample from a policy, score with a gold scorer, estimate KL to a reference
  lab     run the over-optimization lab sweep (methods x beta x seeds in a controlled world)
  demo    the lab's demo subset (the main job; minutes on a laptop CPU)
  pairs   sample completions from a model, score them with a gold scorer, write labelled TRL pairs
  models  prepare a real pretrained model offline (isdaa models prepare smollm2)
  logps   write a model's summed log-probs of every row as behavior_* or ref_* columns
  plot    figures and summary.md of training runs (isdaa plot RUN_DIR [RUN_DIR ...])

`isdaa <command> --help` lists every option with its default.
"""


def option_lines(row: OptionHelp, shown: str) -> list[str]:
    """The two `--help` lines of one option: key, type and default shown as `shown`; its help and limit."""
    limit = f"; must be {row.rule}" if row.rule else ""
    return [f"  --{row.key:<34} {row.type:<6} default: {shown}", f"      {row.help}{limit}"]


def config_help(command: str, cls, aliases: dict | None = None) -> str:
    """`isdaa <command> --help`: every option of the config class `cls`, then the short aliases."""
    lines = [f"usage: isdaa {command} [--config FILE] [--key value ...]", "", "options (dotted keys; YAML uses the same tree):"]
    for row in option_help(cls):
        lines += option_lines(row, repr(row.default))
    if aliases:
        lines += ["", "short aliases:"] + [f"  --{a.replace('_', '-'):<20} = --{k}" for a, k in aliases.items()]
    return "\n".join(lines)


# The commands whose --help needs only their config class (and short aliases): answered by `isdaa.cli.main`
# without importing the command's library.
CONFIG_COMMANDS = {
    "train": (TrainConfig, ALIASES),
    "eval": (EvalConfig, None),
    "pairs": (PairsConfig, {"model": "model.name_or_path"}),
}
