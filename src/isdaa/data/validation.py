"""Row validation for TRL-format preference data, with errors that name file, row and field.

A row is a dict with `prompt`, `chosen`, `rejected`: all strings (plain text), or all lists of
`{role, content}` messages (conversational). Optional float columns: `OPTIONAL_COLUMNS`.

`validate_rows` checks every row and returns normalised copies:
- conversational rows without a prompt (TRL's implicit prompt) get the messages that `chosen` and
  `rejected` share at the start as their prompt; the rest is the completion;
- a conversational completion is exactly one assistant message;
- optional columns are floats, or left out of the row when absent (`None` counts as absent).
The first problem raises `InputError`; nothing is repaired silently.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from numbers import Real

from isdaa.data.text import short_repr, type_name
from isdaa.errors import InputError

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
LOGPS_COLUMNS = (
    "behavior_chosen_logps",
    "behavior_rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
)
OPTIONAL_COLUMNS = LOGPS_COLUMNS + ("weight",)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
ROLES = ("system", "user", "assistant", "tool")
# A summed log-probability is <= 0; allow this much positive rounding noise from whoever computed it.
LOGPS_TOLERANCE = 1e-4
_PAIRS = (
    ("behavior_chosen_logps", "behavior_rejected_logps"),
    ("ref_chosen_logps", "ref_rejected_logps"),
)
_MESSAGE_LIST = "a string or a list of {role, content} messages"


class _Reporter:
    """Builds one-line InputError messages: `<source>: <where>: <problem>`."""

    def __init__(self, source: str, where: Sequence[str] | None):
        self.source = str(source)
        self.where = where

    def label(self, index: int) -> str:
        return self.where[index] if self.where is not None else f"row {index + 1}"

    def error(self, index: int | None, text: str) -> InputError:
        parts = [p for p in (self.source, None if index is None else self.label(index), text) if p]
        return InputError(": ".join(parts).replace("\n", " "))


def validate_rows(
    rows: Sequence[object],
    source: str = "",
    *,
    extra_columns: Iterable[str] | None = (),
    where: Sequence[str] | None = None,
) -> list[dict]:
    """Validate preference rows and return normalised copies (see the module docstring).

    `source` names the file in messages; `where[i]` names row i (default `row i+1`; `load_rows`
    passes `line N` for JSON lines). Columns outside `KNOWN_COLUMNS` are an error unless listed in
    `extra_columns` (kept unchanged); `extra_columns=None` accepts any column.
    """
    report = _Reporter(source, where)
    if len(rows) == 0:
        raise report.error(None, "no rows: expected at least one preference pair (prompt, chosen, rejected)")
    extras = None if extra_columns is None else set(extra_columns)
    out: list[dict] = []
    first_kind: tuple[int, bool] | None = None  # (row index, conversational?)
    first_present: tuple[int, frozenset] | None = None
    for i, row in enumerate(rows):
        norm = _validate_row(row, i, report, extras)
        conversational = isinstance(norm["chosen"], list)
        if first_kind is None:
            first_kind = (i, conversational)
        elif first_kind[1] != conversational:
            kind = "a message list" if conversational else "a string"
            other = "conversational (message lists)" if first_kind[1] else "plain text (strings)"
            raise report.error(
                i,
                f"field 'chosen': {kind}, but {report.label(first_kind[0])} is {other}; "
                "expected every row of a file to be plain text or every row conversational",
            )
        present = frozenset(c for c in OPTIONAL_COLUMNS if c in norm)
        if first_present is None:
            first_present = (i, present)
        elif present != first_present[1]:
            j, before = first_present
            col = sorted(present ^ before)[0]
            if col in present:
                text = f"column '{col}' is given here but missing in {report.label(j)}"
            else:
                text = f"column '{col}' is missing here but given in {report.label(j)}"
            raise report.error(i, text + "; expected it in every row or in none")
        out.append(norm)
    return out


def _validate_row(row: object, i: int, report: _Reporter, extras: set[str] | None) -> dict:
    if not isinstance(row, dict):
        raise report.error(i, f"expected an object with prompt, chosen, rejected; got {type_name(row)}")
    if extras is not None:
        for key in row:
            if key not in KNOWN_COLUMNS and key not in extras:
                raise report.error(i, _unknown_column(key))

    for col in ("chosen", "rejected"):
        if row.get(col) is None:
            raise report.error(i, f"missing field '{col}' (every row needs prompt, chosen, rejected)")
        if not isinstance(row[col], (str, list, tuple)):
            raise report.error(i, f"field '{col}': expected {_MESSAGE_LIST}, got {type_name(row[col])}")
    chosen, rejected = row["chosen"], row["rejected"]
    conversational = not isinstance(chosen, str)
    if isinstance(rejected, str) == conversational:
        kinds = ("a message list", "a string") if conversational else ("a string", "a message list")
        raise report.error(
            i, f"field 'rejected': {kinds[1]}, but 'chosen' is {kinds[0]}; expected both of the same kind"
        )
    prompt = row.get("prompt")
    if conversational:
        chosen = _messages(chosen, "chosen", i, report)
        rejected = _messages(rejected, "rejected", i, report)
        if chosen == rejected:
            raise report.error(i, "fields 'chosen' and 'rejected' are identical; expected two different responses")
        prompt, chosen, rejected = _conversational_prompt(prompt, chosen, rejected, i, report)
        for col, msgs in (("chosen", chosen), ("rejected", rejected)):
            _check_completion_messages(msgs, col, i, report)
        if chosen[0]["content"] == rejected[0]["content"]:
            raise report.error(i, "fields 'chosen' and 'rejected' are identical; expected two different responses")
    else:
        _check_plain_texts(prompt, chosen, rejected, i, report)

    norm = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS}
    norm.update(prompt=prompt, chosen=chosen, rejected=rejected)
    for col in OPTIONAL_COLUMNS:
        value = row.get(col)
        if value is not None:
            norm[col] = _number(value, col, i, report)
    for a, b in _PAIRS:
        if (a in norm) != (b in norm):
            have, lack = (a, b) if a in norm else (b, a)
            raise report.error(i, f"column '{have}' is given without '{lack}'; expected both or neither")
    return norm


def _check_plain_texts(prompt, chosen: str, rejected: str, i: int, report: _Reporter) -> None:
    if prompt is None:
        raise report.error(
            i,
            "missing field 'prompt' (every row needs prompt, chosen, rejected; "
            "only conversational rows may leave it out)",
        )
    if not isinstance(prompt, str):
        got = "a message list, but 'chosen' is a string" if isinstance(prompt, (list, tuple)) else type_name(prompt)
        raise report.error(i, f"field 'prompt': expected {_MESSAGE_LIST}, got {got}")
    if not prompt.strip():
        raise report.error(
            i, "field 'prompt' is empty; expected text (an empty prompt is allowed only in conversational rows)"
        )
    for col, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise report.error(i, f"field '{col}' is empty; expected a non-empty response")
    if chosen == rejected:
        raise report.error(i, "fields 'chosen' and 'rejected' are identical; expected two different responses")


def _unknown_column(key: object) -> str:
    text = f"unknown column {short_repr(key)}"
    close = difflib.get_close_matches(str(key), KNOWN_COLUMNS, n=1, cutoff=0.6)
    if close:
        text += f" (did you mean '{close[0]}'?)"
    return text + f"; expected columns {', '.join(KNOWN_COLUMNS)} (or list it in extra_columns to keep it)"


def _messages(value: object, col: str, i: int, report: _Reporter) -> list[dict]:
    out = []
    for k, msg in enumerate(value):
        field = f"field '{col}[{k}]'"
        if not isinstance(msg, dict):
            raise report.error(i, f"{field}: expected a {{role, content}} message, got {type_name(msg)}")
        role = msg.get("role")
        if role is None:
            raise report.error(i, f"{field}: missing 'role'; expected one of {', '.join(ROLES)}")
        if role not in ROLES:
            raise report.error(i, f"{field}: unknown role {short_repr(role)}; expected one of {', '.join(ROLES)}")
        content = msg.get("content")
        if content is None:
            raise report.error(i, f"{field}: missing 'content'; expected a string")
        if not isinstance(content, str):
            raise report.error(i, f"{field}: 'content' is {type_name(content)}; expected a string")
        out.append(dict(msg))
    return out


def _conversational_prompt(prompt, chosen, rejected, i, report):
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()) or (
        isinstance(prompt, (list, tuple)) and len(prompt) == 0
    ):
        # TRL's implicit prompt: the leading messages that chosen and rejected share.
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise report.error(
                i,
                "field 'prompt' is missing or empty and 'chosen' and 'rejected' share no leading messages; "
                "expected a prompt, or conversations that start with the same prompt messages",
            )
        return chosen[:n], chosen[n:], rejected[n:]
    if isinstance(prompt, str):
        raise report.error(
            i,
            "field 'prompt': a string, but 'chosen' is a message list; expected a message list "
            "(or leave 'prompt' out to take the messages chosen and rejected share)",
        )
    if not isinstance(prompt, (list, tuple)):
        raise report.error(i, f"field 'prompt': expected {_MESSAGE_LIST}, got {type_name(prompt)}")
    return _messages(prompt, "prompt", i, report), chosen, rejected


def _check_completion_messages(msgs: list[dict], col: str, i: int, report: _Reporter) -> None:
    if len(msgs) == 0:
        raise report.error(i, f"field '{col}' is empty (no message after the prompt); expected one assistant message")
    if len(msgs) > 1 or msgs[0]["role"] != "assistant":
        got = f"{len(msgs)} messages" if len(msgs) > 1 else f"a '{msgs[0]['role']}' message"
        raise report.error(
            i,
            f"field '{col}': expected one assistant message as the completion, got {got} "
            "(if it repeats the prompt, leave 'prompt' out and it is taken from the shared leading messages)",
        )
    if not msgs[0]["content"].strip():
        raise report.error(i, f"field '{col}' is empty; expected a non-empty response")


def _number(value: object, col: str, i: int, report: _Reporter) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise report.error(i, f"field '{col}': expected a number, got {type_name(value)} {short_repr(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise report.error(i, f"field '{col}' is {x}; expected a finite number")
    if col == "weight" and x < 0:
        raise report.error(i, f"field 'weight' is {x:g}; expected a weight >= 0")
    if col in LOGPS_COLUMNS and x > LOGPS_TOLERANCE:
        raise report.error(
            i,
            f"field '{col}' is {x:g}; expected a summed log-probability <= 0 (is it a probability or a negated loss?)",
        )
    return min(x, 0.0) if col in LOGPS_COLUMNS else x
