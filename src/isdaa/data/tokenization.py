"""Tokenisation and truncation of validated preference rows into `Example`s.

The prompt and each completion are tokenised separately and concatenated as ids, so the prompt/
completion boundary never depends on how a tokenizer would merge across it:

- plain text: prompt ids = `tokenizer(prompt)` (with the tokenizer's special tokens, e.g. BOS; an EOS that
  the tokenizer appends to the prompt is dropped: no EOS is left inside a prompt); completion ids =
  `tokenizer(completion, add_special_tokens=False)` + [EOS].
- conversational: prompt ids = the chat template rendered with `add_generation_prompt=True`,
  tokenised without added special tokens (what `apply_chat_template(tokenize=True)` gives: the
  template itself writes BOS if the model wants one); completion ids = the assistant message's content
  tokenised, then the template's own ending of the assistant turn, up to and including its first special
  token (the end-of-turn marker, e.g. SmolLM2's `<|im_end|>`). What the template writes after that marker
  (the newline before the next turn) is left out: generation stops at the marker, so the trainer's
  completion is exactly what the model emits when sampled (`isdaa pairs`, `isdaa eval`). A template
  whose ending holds no special token gets its ending + [EOS] (the tiny test template ends with a space:
  [EOS] alone); one that does not render the prompt and the content verbatim gets [EOS], as plain text.

Every completion ends with exactly one end marker: a completion whose text already ends with the EOS
string, or whose tokens already end with EOS, gets no second one.

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
    """One tokenised preference pair; completions end with one end marker (EOS, or the chat template's end of
    the assistant turn) unless truncated."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    behavior_chosen_logps: float | None = None
    behavior_rejected_logps: float | None = None
    ref_chosen_logps: float | None = None
    ref_rejected_logps: float | None = None
    weight: float | None = None
    # (prompt, chosen, rejected) token counts before truncation, as `tokenize_rows` saw them (for the data
    # report, `isdaa.data.report`); None for an Example built by hand
    untruncated_lengths: tuple[int, int, int] | None = None


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
    examples, kept = tokenize_rows_indexed(
        rows, tokenizer, max_length=max_length, max_prompt_length=max_prompt_length, source=source
    )
    return examples, len(rows) - len(kept)


def tokenize_rows_indexed(
    rows: Sequence[dict],
    tokenizer,
    *,
    max_length: int,
    max_prompt_length: int | None,
    source: str = "",
) -> tuple[list[Example], list[int]]:
    """`tokenize_rows`, returning with the examples the index of the row each one comes from (dropped rows
    have none): (examples, row indices)."""
    where = f"{source}: " if source else ""
    _check_limits(max_length, max_prompt_length, where)
    rows = validate_rows(rows, source, extra_columns=None)
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise InputError(f"{where}tokenizer has no EOS token (eos_token_id is None); expected one to end completions")
    prompts, chosen, rejected = _token_ids(rows, tokenizer, where)
    examples: list[Example] = []
    kept: list[int] = []
    too_long = identical = 0
    for i, row in enumerate(rows):
        if not prompts[i]:
            raise InputError(f"{where}row {i + 1}: field 'prompt' tokenises to no tokens; expected a non-empty prompt")
        example = _truncated(row, prompts[i], chosen[i], rejected[i], max_length, max_prompt_length)
        if example is None:
            too_long += 1
        elif example.chosen_ids == example.rejected_ids:
            identical += 1
        else:
            examples.append(example)
            kept.append(i)
    _report_dropped(where, len(rows), len(examples), too_long, identical, max_length, max_prompt_length)
    return examples, kept


def _check_limits(max_length, max_prompt_length, where: str) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise InputError(f"{where}max_length={short_repr(max_length)}: expected an integer >= 2")
    if max_prompt_length is not None and (
        isinstance(max_prompt_length, bool) or not isinstance(max_prompt_length, int) or max_prompt_length < 1
    ):
        raise InputError(f"{where}max_prompt_length={short_repr(max_prompt_length)}: expected an integer >= 1 or null")


def _token_ids(rows: list[dict], tokenizer, where: str) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """(prompt ids, chosen ids, rejected ids) of every row before truncation; completions end with their
    end marker (EOS, or the chat template's end of the assistant turn)."""
    eos = tokenizer.eos_token_id
    if isinstance(rows[0]["chosen"], list):
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(
                f"{where}rows are conversational but the tokenizer has no chat template; "
                "expected a tokenizer with chat_template set, or plain-text rows"
            )
        prompt_texts = [_render(tokenizer, row["prompt"], i, where) for i, row in enumerate(rows)]
        prompts = _ids(tokenizer, prompt_texts, special=False)
        specials, completions, fallbacks = special_token_ids(tokenizer), [], 0
        for key in ("chosen", "rejected"):
            contents = [row[key][0]["content"] for row in rows]
            endings = [_turn_ending(tokenizer, row["prompt"], text, row[key][0], specials, eos)
                       for row, text in zip(rows, prompt_texts)]
            fallbacks += sum(e is None for e in endings)
            completions.append(completion_token_ids(tokenizer, contents, endings))
        _warn_template_fallback(where, fallbacks)
        return prompts, completions[0], completions[1]
    prompts = prompt_token_ids(tokenizer, [row["prompt"] for row in rows])
    chosen = completion_token_ids(tokenizer, [row["chosen"] for row in rows])
    rejected = completion_token_ids(tokenizer, [row["rejected"] for row in rows])
    return prompts, chosen, rejected


def _ids(tokenizer, texts: list[str], *, special: bool) -> list[list[int]]:
    return [list(r) for r in tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"]]


def prompt_token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Plain-text prompt ids: `tokenizer(text)` with its special tokens (e.g. BOS), less an EOS the tokenizer
    appended at the end (no EOS is left inside a prompt)."""
    eos = tokenizer.eos_token_id
    return [ids[:-1] if len(ids) > 1 and ids[-1] == eos else ids for ids in _ids(tokenizer, texts, special=True)]


def completion_token_ids(tokenizer, texts: list[str], endings: list[list[int] | None] | None = None) -> list[list[int]]:
    """Completion ids: each text tokenised without special tokens, then its ending (`endings[i]`, [EOS] when
    None or not given). One end marker only: an EOS string ending the text, or an EOS token ending its
    tokens, is removed first."""
    eos, eos_text = tokenizer.eos_token_id, tokenizer.eos_token
    texts = [t[: -len(eos_text)] if eos_text and t.endswith(eos_text) else t for t in texts]
    out = []
    for k, ids in enumerate(_ids(tokenizer, texts, special=False) if texts else []):
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        ending = endings[k] if endings is not None and endings[k] is not None else [eos]
        out.append(ids + list(ending))
    return out


def special_token_ids(tokenizer) -> set[int]:
    """The ids of the tokenizer's special tokens (EOS, BOS, ... and added tokens marked special)."""
    ids = set(getattr(tokenizer, "all_special_ids", ()))
    ids.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False))
    return ids | {tokenizer.eos_token_id}


def _turn_ending(tokenizer, prompt: list[dict], prompt_text: str, message: dict, specials: set[int],
                 eos: int) -> list[int] | None:
    """The ids the chat template writes after the assistant content, up to and including its first special
    token; all of them + [EOS] when they hold no special token; None when the template does not render the
    prompt and the content verbatim, or fails on the whole conversation (the caller falls back to [EOS])."""
    try:
        full = tokenizer.apply_chat_template(list(prompt) + [message], tokenize=False)
    except Exception:  # jinja errors, raise_exception() in templates: the prompt alone rendered, so fall back
        return None
    head = prompt_text + message["content"]
    if not isinstance(full, str) or not full.startswith(head):
        return None
    tail = _ids(tokenizer, [full[len(head):]], special=False)[0]
    for k, token in enumerate(tail):
        if token in specials:
            return tail[: k + 1]
    return tail + [eos]


def _warn_template_fallback(where: str, n: int) -> None:
    if n:
        logger.warning(
            "%s%d completions: the chat template does not render the prompt and the assistant content verbatim; "
            "they end with EOS instead of the template's end of turn", where, n,
        )


def _truncated(row: dict, prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
               max_prompt_length: int | None) -> Example | None:
    """The row's Example after TRL-order truncation (prompt keeps its end, completions their start);
    None when the prompt leaves no room for a completion token."""
    lengths = (len(prompt), len(chosen), len(rejected))
    if max_prompt_length is not None:
        prompt = prompt[-max_prompt_length:]
    room = max_length - len(prompt)
    if room < 1:
        return None
    extras = {k: row[k] for k in OPTIONAL_COLUMNS if k in row}
    return Example(list(prompt), chosen[:room], rejected[:room], **extras, untruncated_lengths=lengths)


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
