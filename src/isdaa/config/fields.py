"""How a config field is declared: `option(default, help="...", check=...)` states the default, a one-line
help and the field's limit once, next to the field. They travel as `dataclasses.field` metadata, read by
`isdaa.config.loader` (validation) and by `--help`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
from collections.abc import Callable
from typing import Any

HELP = "help"
CHECK = "check"


@dataclasses.dataclass(frozen=True)
class Check:
    """A limit on a field's value: `rule` reads after "must be" (and in `--help`); `ok(value)` tests it.

    `message(key, value)` builds the error (after "option "); by default "<key> must be <rule>, got <value>"."""

    rule: str
    ok: Callable[[Any], bool]
    message: Callable[[str, Any], str] | None = None

    def problem(self, key: str, value) -> str | None:
        """None if `value` passes, else the error message naming `key`."""
        if self.ok(value):
            return None
        return self.message(key, value) if self.message else f"{key} must be {self.rule}, got {value!r}"


def option(default, *, help: str, check: Check | None = None):
    """A dataclass field with its default, one-line help and optional limit (a list or dict default is copied)."""
    metadata = {HELP: help, CHECK: check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def positive() -> Check:
    """value > 0."""
    return Check("> 0", lambda v: v > 0)


def non_negative() -> Check:
    """value >= 0."""
    return Check(">= 0", lambda v: v >= 0)


def within(interval: str, test: Callable[[Any], bool]) -> Check:
    """value in `interval` (written as in the message, e.g. "[0, 1)"), tested by `test`."""
    return Check(f"in {interval}", test)


def one_of(*names: str) -> Check:
    """value is one of `names` ("a, b or c" in the message)."""
    return Check(", ".join(names[:-1]) + " or " + names[-1], lambda v: v in names)


@functools.cache
def _tracker_names() -> tuple[str, ...]:
    """The names accelerate's `log_with` accepts."""
    # lazy: accelerate loads torch; reading a config (or `isdaa --help`) should not, until a tracker is checked
    from accelerate.utils import LoggerType

    return tuple(t.value for t in LoggerType)


def _tracker_message(key: str, value: list) -> str:
    known = _tracker_names()
    bad = [t for t in value if t not in known]
    close = difflib.get_close_matches(str(bad[0]), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{key}: unknown tracker {bad[0]!r}{hint}; expected some of {', '.join(known)}"


def known_trackers() -> Check:
    """Every entry is a tracker name accelerate's `log_with` accepts."""
    return Check("names accelerate knows", lambda v: all(t in _tracker_names() for t in v), _tracker_message)
