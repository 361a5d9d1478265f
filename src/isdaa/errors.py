"""Error types shared by every module, and the exit codes the CLI gives them.

`InputError` is the one exception the CLI turns into a single line on stderr and exit code 2:
bad data, bad config, bad paths. Its message must name the file/row/field or option and say what
was expected. `TrainingStopped` (a run that stopped itself, checkpoint saved) and `WriteFailed` (a checkpoint,
`final/` or cache that could not be written: disk full, quota, I/O error) are one line and exit 1.
`RunInterrupted` (a run stopped by SIGTERM, SIGUSR1 or Ctrl-C after saving a checkpoint) is one line and exit
128 + the signal number. Anything else is an internal error (exit 1, with its traceback).
"""


class InputError(ValueError):
    """Bad user input (data, config, paths). The message is shown to the user as one line."""


class TrainingStopped(RuntimeError):
    """Raised by the trainer after `max_bad_steps` consecutive non-finite steps (a checkpoint is saved first)."""


class WriteFailed(RuntimeError):
    """A checkpoint, `final/` or reference-cache write failed (disk full, quota, I/O error); what was written
    before it (the previous checkpoint) is intact and the torn temporary files are removed."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after it saved a complete checkpoint; `exit_code` is 128 + the signal number,
    `event` what happened without the advice (e.g. "preempted (SIGTERM) at step 3"; by default the message).
    A KeyboardInterrupt, so that code catching `Exception` (the lab's runs) lets it through, as Ctrl-C."""

    def __init__(self, message: str, exit_code: int, event: str | None = None):
        super().__init__(message, exit_code)
        self.exit_code = exit_code
        self.event = message if event is None else event

    def __str__(self) -> str:
        return self.args[0]
