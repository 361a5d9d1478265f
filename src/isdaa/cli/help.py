"""The texts `isdaa ... --help` prints: the command list and every option of a command with its type,
default, one-line help and limit (read from the config schemas, `isdaa.config.option_help`), grouped by
section (model, data, objective, optim, monitor, then the command's own options), the common ones first."""

from __future__ import annotations

import dataclasses

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

`isdaa <command> --help` lists every option with its default; `isdaa --version` prints the version.
"""

# The options most runs set, shown first in `isdaa train --help` (and not repeated in their sections).
TRAIN_COMMON = ("model.name_or_path", "model.init", "model.tokenizer", "data.train_file", "data.eval_file",
                "output_dir", "objective.loss", "objective.beta", "objective.weighting", "optim.lr", "max_steps",
                "epochs", "batch_size")


def option_lines(row: OptionHelp, shown: str, alias: str | None = None) -> list[str]:
    """The two `--help` lines of one option: key (and its short alias), type and default shown as `shown`; its
    help and limit."""
    limit = f"; must be {row.rule}" if row.rule else ""
    name = f"{row.key} (--{alias.replace('_', '-')})" if alias else row.key
    return [f"  --{name:<34} {row.type:<10} default: {shown}", f"      {row.help}{limit}"]


def _sections(cls) -> list[tuple[str, str]]:
    """(name, one-sentence description) of every nested section of `cls`, in field order."""
    out = []
    for f in dataclasses.fields(cls):
        section = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(section):
            doc = (type(section).__doc__ or "").strip().split(". ")[0].rstrip(".")
            out.append((f.name, doc))
    return out


def config_help(command: str, cls, aliases: dict | None = None, common: tuple[str, ...] = (),
                own: tuple[str, str] = ("options", "")) -> str:
    """`isdaa <command> --help`: the `common` options, then every other option of the config class `cls` by
    section (nested sections first, then the command's own options: `own` is their (name, description))."""
    by_key = {row.key: row for row in option_help(cls)}
    alias_of = {target: alias for alias, target in (aliases or {}).items()}
    lines = [f"usage: isdaa {command} [--config FILE] [--key value ...]", "",
             "Every option is a dotted key (YAML uses the same tree); a short alias stands in brackets."]

    def block(title: str, keys) -> None:
        keys = [k for k in keys if k in by_key]
        if keys:
            lines.extend(["", title])
            for key in keys:
                lines.extend(option_lines(by_key[key], repr(by_key[key].default), alias_of.get(key)))

    block("common options:", common)
    rest = [k for k in by_key if k not in common]
    for name, doc in [*_sections(cls), own]:
        keys = [k for k in rest if k.startswith(f"{name}.")] if name != own[0] else [k for k in rest if "." not in k]
        block(f"{name}: {doc}" if doc else f"{name}:", keys)
    return "\n".join(lines)


# The commands whose --help needs only their config class (and short aliases, common options, the header of their
# own options): answered by `isdaa.cli.main` without importing the command's library.
CONFIG_COMMANDS = {
    "train": (TrainConfig, ALIASES, TRAIN_COMMON,
              ("run", "The run directory, its length and batches, checkpoints, logging")),
    "eval": (EvalConfig, None, (), ("options", "")),
    "pairs": (PairsConfig, {"model": "model.name_or_path"}, (), ("pairs", "Sampling, scoring and labelling")),
}
