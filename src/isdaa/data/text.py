"""Small text helpers for one-line error messages about user data (shared by data's modules)."""

from __future__ import annotations

from numbers import Real

__all__ = ["short_repr", "one_line", "type_name"]


def short_repr(value: object, limit: int = 40) -> str:
    """A one-line, bounded repr of a user value for error messages."""
    text = repr(value).replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int = 120) -> str:
    """`text` on one line, cut to `limit` characters (for library messages quoted in ours)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: object) -> str:
    """The JSON-ish kind of `value` for messages: "null", "a boolean", "a string", "a list", "an object", "a number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, Real):
        return "a number"
    return type(value).__name__
