"""Tokenisation and truncation of validated preference rows into `Example`s.

The prompt and each completion are tokenised separately and concatenated as ids, so the prompt/
completion boundary never depends on how a tokenizer would merge across it:

- plain text: prompt ids = `tokenizer(prompt)` (with the tokenizer's special tokens, e.g. BOS);
  completion ids = `tokenizer(completion, add_special_tokens=False)` + [EOS].
- conversational: prompt ids = the chat template rendered with `add_generation_prompt=True`,
  tokenised without added special tokens (what `apply_chat_template(tokenize=True)` gives: the
  template itself writes BOS if the model wants one); completion ids = the assistant message's content
  tokenised + [EOS]. This is a simplification: template text after the assistant content (an
  end-of-turn marker such as `<|im_end|>`) is not reproduced; EOS stands in for it.

Truncation (TRL's order): the prompt keeps its END (at most `max_prompt_length` tokens), then each
completion keeps its START so that prompt + completion <= `max_length`. A row whose prompt leaves no
room for a completion token is dropped, as is a row whose completions become identical; both are
counted in `n_dropped`. A truncated completion loses its EOS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from isdaa.data.text import one_line, short_repr
from isdaa.data.validation import OPTIONAL_COLUMNS, validate_rows
from isdaa.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class Example:
    """One tokenised preference pair; completions end with EOS unless truncated."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    behavior_chosen_logps: float | None = None
    behavior_rejected_logps: float | None = None
    ref_chosen_logps: float | None = None
    ref_rejected_logps: float | None = None
    weight: float | None = None


def length(example: Example) -> int:
    """Padded length this example needs in a batch: prompt + the longer completion (for bucketing)."""
    return len(example.prompt_ids) + max(len(example.chosen_ids), len(example.rejected_ids))


def tokenize_rows(
    rows: Sequence[dict],
    tokenizer,
    *,
    max_length: int,
    max_prompt_length: int | None,
    source: str = "",
) -> tuple[list[Example], int]:
    """Tokenise and truncate rows (as from `load_rows`) into Examples; returns (examples, n_dropped).

    `source` names the data in error messages. Raises InputError when the tokenizer lacks EOS (or a
    chat template for conversational rows), when the template fails on a row, or when every row is
    dropped.
    """
    where = f"{source}: " if source else ""
    _check_limits(max_length, max_prompt_length, where)
    rows = validate_rows(rows, source, extra_columns=None)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise InputError(f"{where}tokenizer has no EOS token (eos_token_id is None); expected one to end completions")
    prompts, chosen, rejected = _token_ids(rows, tokenizer, where)
    examples: list[Example] = []
    too_long = identical = 0
    for i, row in enumerate(rows):
        if not prompts[i]:
            raise InputError(f"{where}row {i + 1}: field 'prompt' tokenises to no tokens; expected a non-empty prompt")
        example = _truncated(row, prompts[i], chosen[i], rejected[i], eos, max_length, max_prompt_length)
        if example is None:
            too_long += 1
        elif example.chosen_ids == example.rejected_ids:
            identical += 1
        else:
            examples.append(example)
    _report_dropped(where, len(rows), len(examples), too_long, identical, max_length, max_prompt_length)
    return examples, too_long + identical


def _check_limits(max_length, max_prompt_length, where: str) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise InputError(f"{where}max_length={short_repr(max_length)}: expected an integer >= 2")
    if max_prompt_length is not None and (
        isinstance(max_prompt_length, bool) or not isinstance(max_prompt_length, int) or max_prompt_length < 1
    ):
        raise InputError(f"{where}max_prompt_length={short_repr(max_prompt_length)}: expected an integer >= 1 or null")


def _token_ids(rows: list[dict], tokenizer, where: str) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """(prompt ids, chosen ids, rejected ids) of every row, before truncation and without the EOS."""

    def ids(texts: list[str], special: bool) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=special, verbose=False)["input_ids"]

    if isinstance(rows[0]["chosen"], list):
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(
                f"{where}rows are conversational but the tokenizer has no chat template; "
                "expected a tokenizer with chat_template set, or plain-text rows"
            )
        prompt_texts = [_render(tokenizer, row["prompt"], i, where) for i, row in enumerate(rows)]
        prompts = ids(prompt_texts, False)
        chosen = ids([row["chosen"][0]["content"] for row in rows], False)
        rejected = ids([row["rejected"][0]["content"] for row in rows], False)
    else:
        prompts = ids([row["prompt"] for row in rows], True)
        chosen = ids([row["chosen"] for row in rows], False)
        rejected = ids([row["rejected"] for row in rows], False)
    return prompts, chosen, rejected


def _truncated(row: dict, prompt: list[int], chosen: list[int], rejected: list[int], eos: int, max_length: int,
               max_prompt_length: int | None) -> Example | None:
    """The row's Example after TRL-order truncation (prompt keeps its end, completions their start, + EOS);
    None when the prompt leaves no room for a completion token."""
    if max_prompt_length is not None:
        prompt = prompt[-max_prompt_length:]
    room = max_length - len(prompt)
    if room < 1:
        return None
    extras = {k: row[k] for k in OPTIONAL_COLUMNS if k in row}
    return Example(list(prompt), (chosen + [eos])[:room], (rejected + [eos])[:room], **extras)


def _report_dropped(where: str, n_rows: int, n_kept: int, too_long: int, identical: int, max_length: int,
                    max_prompt_length: int | None) -> None:
    """Warn about dropped rows; InputError when none is left."""
    dropped = too_long + identical
    limits = f"max_length={max_length}, max_prompt_length={max_prompt_length}"
    if not n_kept:
        if identical == 0:
            raise InputError(
                f"{where}every row's prompt fills max_length={max_length} (max_prompt_length={max_prompt_length}), "
                "leaving no completion token: raise max_length or lower max_prompt_length"
            )
        raise InputError(
            f"{where}every row was dropped at {limits}: {too_long} whose prompt fills max_length, {identical} whose "
            "chosen and rejected are identical once truncated; raise max_length or lower max_prompt_length"
        )
    if dropped:
        logger.warning(
            "%sdropped %d of %d rows at %s: %d whose prompt fills max_length, %d whose completions are identical "
            "once truncated",
            where, dropped, n_rows, limits, too_long, identical,
        )


def _render(tokenizer, messages: list[dict], i: int, where: str) -> str:
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # jinja errors, raise_exception() in templates (e.g. roles must alternate)
        raise InputError(
            f"{where}row {i + 1}: field 'prompt': the chat template failed ({one_line(e)}); "
            "expected messages the template accepts"
        ) from e
