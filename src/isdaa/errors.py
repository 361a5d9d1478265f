"""Error types shared by every module, and the exit codes the CLI gives them.

`InputError` is the one exception the CLI turns into a single line on stderr and exit code 2:
bad data, bad config, bad paths. Its message must name the file/row/field or option and say what
was expected. `TrainingStopped` (a run that stopped itself, checkpoint saved) is one line and exit 1.
Anything else is an internal error (exit 1, with its traceback).
"""


class InputError(ValueError):
    """Bad user input (data, config, paths). The message is shown to the user as one line."""


class TrainingStopped(RuntimeError):
    """Raised by the trainer after `max_bad_steps` consecutive non-finite steps (a checkpoint is saved first)."""
