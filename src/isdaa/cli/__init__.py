"""`isdaa train / eval / lab / demo / pairs / models`: the only place that reads argv.

Each command reads an optional YAML (`--config`) and dotted overrides (`--objective.beta 0.01`, or the
short aliases `--beta 0.01 --loss ipo --weighting is --is-eps 1.0`), builds its config and makes one
library call. Exit codes: 0 ok, 2 bad input or config (one line on stderr, no traceback), 1 internal
error, a run stopped by non-finite steps or a failed write (disk full), 143 / 138 / 130 a run stopped by
SIGTERM / SIGUSR1 / Ctrl-C (checkpoint saved first; also outside a run's steps — while it imports, loads its
model or writes its plots — with nothing saved: `main` handles the signals from its first line, before any heavy
import, and the trainer takes them over for its steps).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import signal
import sys
import threading
from importlib import metadata

import isdaa
from isdaa.cli.argv import wants_help
from isdaa.cli.help import CONFIG_COMMANDS, USAGE, config_help
from isdaa.errors import InputError, RunInterrupted, TrainingStopped, WriteFailed

# Stopped outside a run's steps by these signals: the exit code is 128 + the number, as for a stopped run
# (isdaa.training.signals); Ctrl-C (SIGINT) is Python's KeyboardInterrupt, answered in `main`.
ENTRY_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))

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


def version() -> str:
    """The installed distribution's version, else the package's own `isdaa.__version__` (a source checkout)."""
    try:
        return metadata.version("isdaa")
    except metadata.PackageNotFoundError:
        return isdaa.__version__


def _stopped_outside_steps(signum, frame):
    name = signal.Signals(signum).name
    raise RunInterrupted(f"stopped by {name} outside a run's training steps (nothing saved at this stop)",
                         128 + int(signum))


@contextlib.contextmanager
def entry_signals():
    """While active (the whole of `main`), SIGTERM / SIGUSR1 end the command with one line and exit code 128 + the
    signal number instead of killing it silently (-15) — in imports, model loading, set-up; the trainer's own
    handler (isdaa.training.signals) replaces this one during the steps and puts it back after. The previous
    handlers come back on exit (in-process callers); nothing is installed outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _stopped_outside_steps) for signum in ENTRY_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    """Run `isdaa <command> ...` (argv defaults to sys.argv[1:]); returns the exit code."""
    with entry_signals():
        try:
            return _main(list(sys.argv[1:] if argv is None else argv))
        except RunInterrupted as exc:  # a signal between two steps of `_main` itself (its own handler missed it)
            print(f"isdaa: {exc}", file=sys.stderr)
            return exc.exit_code


def _unknown_command(command: str) -> str:
    close = difflib.get_close_matches(command, list(COMMANDS), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"error: unknown command '{command}'{hint}; expected one of {', '.join(COMMANDS)}"


def _main(argv: list[str]) -> int:
    """The command's exit code: 0, 2 (one `error:` line), 1, or 128 + a stop signal."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        print(f"isdaa {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(_unknown_command(command), file=sys.stderr)
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
