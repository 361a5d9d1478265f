"""Reading a command's argv: `--config FILE`, dotted overrides (`--objective.beta 0.01`, `--key=value`, a bare
`--flag` = true for an on/off option, refused for any other) and the short aliases (`--beta 0.01` ==
`--objective.beta 0.01`). The overrides are a `CommandLine`, so that the config loader can say an error came
from the command line, spell the option as it was typed and suggest the aliases."""

from __future__ import annotations

import argparse

from isdaa.config.sources import CommandLine, NoValue
from isdaa.errors import InputError

# Short flags accepted on the command line: --beta 0.01 == --objective.beta 0.01
ALIASES = {
    "loss": "objective.loss",
    "beta": "objective.beta",
    "weighting": "objective.weighting",
    "is_eps": "objective.is_eps",
    "sft_eta": "objective.sft_eta",
    "lr": "optim.lr",
    "model": "model.name_or_path",
    "train_file": "data.train_file",
    "eval_file": "data.eval_file",
    "max_length": "data.max_length",
    "max_prompt_length": "data.max_prompt_length",
    "lora": "lora.enabled",
}


def wants_help(args: list[str]) -> bool:
    """`-h` or `--help` anywhere among the command's arguments."""
    return "-h" in args or "--help" in args


def split_config(args: list[str]) -> tuple[str | None, list[str]]:
    """(the `--config FILE` path or None, the other arguments)."""
    path, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--config":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError("option --config: expected a YAML file path")
            path, i = args[i + 1], i + 2
        elif args[i].startswith("--config="):
            path, i = args[i].split("=", 1)[1], i + 1
        else:
            rest.append(args[i])
            i += 1
    return path, rest


def parse_overrides(args: list[str]) -> CommandLine:
    """`["--objective.beta", "0.1", "--loss=ipo", "--lora"]` -> [("objective.beta", "0.1"), ...].

    An option with no value (followed by another option or nothing) gets `NoValue()` ("true"): the loader
    accepts it for an on/off option only (`--lora`, `--progress`) and refuses it, naming the option, for any other."""
    pairs, typed = [], {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise InputError(f"unexpected argument {arg!r}: options look like --key value or --key=value")
        spelled = arg.split("=", 1)[0]
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 2
        else:
            value, i = NoValue(), i + 1
        key = key.replace("-", "_")
        key = ALIASES.get(key, key)
        pairs.append((key, value))
        typed[key] = spelled
    return CommandLine(pairs, typed=typed, aliases=ALIASES)


def config_args(args: list[str]) -> tuple[str | None, CommandLine]:
    """(YAML path or None, dotted overrides): what `load_config(cls, path, overrides)` takes."""
    path, rest = split_config(args)
    return path, parse_overrides(rest)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands with their own flags (`isdaa models`, `isdaa logps`): its errors are an
    InputError `<prog>: <message>` (one `error:` line and exit code 2, like every other command)."""

    def error(self, message):
        raise InputError(f"{self.prog}: {message}")
