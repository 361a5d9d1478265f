"""Error types shared by every module.

`InputError` is the one exception the CLI turns into a single line on stderr and exit code 2:
bad data, bad config, bad paths. Its message must name the file/row/field or option and say what
was expected. Anything else is an internal error (exit 1).
"""


class InputError(ValueError):
    """Bad user input (data, config, paths). The message is shown to the user as one line."""
