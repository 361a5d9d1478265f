"""`isdaa train / eval / lab / demo / pairs / models`: the only place that reads argv.

Each command reads an optional YAML (`--config`) and dotted overrides (`--objective.beta 0.01`, or the
short aliases `--beta 0.01 --loss ipo --weighting is --is-eps 1.0`), builds its config and makes one
library call. Exit codes: 0 ok, 2 bad input or config (one line on stderr, no traceback), 1 internal
error, a run stopped by non-finite steps or a failed write (disk full), 143 / 138 / 130 a run stopped by
SIGTERM / SIGUSR1 / Ctrl-C (checkpoint saved first; 130 also for Ctrl-C outside a run's steps).
"""

from __future__ import annotations

import importlib
import sys

from isdaa.cli.argv import wants_help
from isdaa.cli.help import CONFIG_COMMANDS, USAGE, config_help
from isdaa.errors import InputError, RunInterrupted, TrainingStopped, WriteFailed

# command -> "module:function" (argv -> exit code). Imported when the command runs, so that a command loads
# only its own layers and `isdaa --help` or a mistyped command answers at once, without torch or transformers.
COMMANDS = {
    "train": "isdaa.cli.train:train_command",
    "eval": "isdaa.cli.eval:eval_command",
    "lab": "isdaa.cli.lab:lab_command",
    "demo": "isdaa.cli.lab:demo_command",
    "pairs": "isdaa.cli.pairs:pairs_command",
    "models": "isdaa.cli.models:models_command",
    "logps": "isdaa.cli.logps:logps_command",
    "plot": "isdaa.cli.plot:plot_command",
}


def command_function(command: str):
    """The function that runs `command` (its module imported now)."""
    module, function = COMMANDS[command].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    """Run `isdaa <command> ...` (argv defaults to sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        if command in CONFIG_COMMANDS and wants_help(rest):
            print(config_help(command, *CONFIG_COMMANDS[command]))
            return 0
        return command_function(command)(rest)
    except InputError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except (TrainingStopped, WriteFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RunInterrupted as exc:
        print(f"isdaa: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("isdaa: interrupted", file=sys.stderr)
        return 130
