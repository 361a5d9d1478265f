"""`isdaa train / eval / lab / demo / pairs / models`: the only place that reads argv.

Each command reads an optional YAML (`--config`) and dotted overrides (`--objective.beta 0.01`, or the
short aliases `--beta 0.01 --loss ipo --weighting is --is-eps 1.0`), builds its config and makes one
library call. Exit codes: 0 ok, 2 bad input or config (one line on stderr, no traceback), 1 internal
error or a run stopped by non-finite steps, 130 interrupted.
"""

from __future__ import annotations

import sys

from isdaa.cli.commands import demo_command, eval_command, lab_command, pairs_command, train_command
from isdaa.cli.help import USAGE
from isdaa.cli.models import models_command
from isdaa.errors import InputError
from isdaa.training.trainer import TrainingStopped

COMMANDS = {
    "train": train_command,
    "eval": eval_command,
    "lab": lab_command,
    "demo": demo_command,
    "pairs": pairs_command,
    "models": models_command,
}


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
        return COMMANDS[command](rest)
    except InputError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("isdaa: interrupted", file=sys.stderr)
        return 130
