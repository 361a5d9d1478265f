"""The pre-flight report of a tokenised data file: how long its rows are, how much of it the tokenizer cannot
read, how much truncation cut.

    report = data_report(examples, tokenizer, source="train.jsonl", dropped=n_dropped,
                         max_length=1024, max_prompt_length=512)
    print(report.line())                 # one line for the training log
    warning = unknown_tokens_check(report, option="data.train_file")  # InputError above UNKNOWN_REFUSE

Unknown tokens: the share of the text tokens that are the tokenizer's unknown token (`unk_token_id`), counted on
the ids the model trains on (after truncation); the other special tokens (BOS, EOS, the chat template's markers)
are not text and are left out of the count. A tokenizer without an unknown token of its own (byte-level BPE reads any text; GPT-2's
names its EOS `<|endoftext|>` as the unknown token too) has no share: None. Text the tokenizer cannot read trains on `<unk>` runs: the loss falls, the accuracy reaches
1.00 and the model learns nothing about the text, so a file mostly unknown to the tokenizer is refused
(`UNKNOWN_REFUSE`) and a noticeable share is a warning (`UNKNOWN_WARN`).

Token counts are those before truncation (`Example.untruncated_lengths`); a row counts as truncated when its
prompt lost tokens to `max_prompt_length`, or one of its responses to `max_length`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from isdaa.data.tokenization import Example, special_token_ids
from isdaa.errors import InputError

__all__ = ["DataReport", "UNKNOWN_REFUSE", "UNKNOWN_WARN", "data_report", "unknown_tokens_check"]

UNKNOWN_REFUSE = 0.5  # more than half the text tokens unknown: refused
UNKNOWN_WARN = 0.05  # more than 5%: a warning
CHUNK = 4096  # examples whose ids are counted in one numpy array


@dataclass(frozen=True)
class DataReport:
    """What `data_report` measured of one data file (token counts before truncation; shares in [0, 1])."""

    source: str
    rows: int  # rows kept (examples)
    dropped: int | None  # rows dropped by tokenisation (prompt too long, completions identical once truncated)
    prompt_mean: float
    prompt_max: int
    response_mean: float  # chosen and rejected responses together
    response_max: int
    unknown_share: float | None  # None: the tokenizer has no unknown token
    unknown_token: str | None
    tokenizer: str | None  # where the tokenizer was loaded from (`name_or_path`)
    prompt_truncated: float  # share of rows whose prompt was cut to max_prompt_length
    response_truncated: float  # share of rows with a response cut to fit max_length
    max_length: int
    max_prompt_length: int | None

    def line(self) -> str:
        """The report as one line of the training log."""
        unknown = ("n/a (the tokenizer has no unknown token of its own)" if self.unknown_share is None
                   else f"{_percent(self.unknown_share)} ({self.unknown_token})")
        dropped = "" if self.dropped is None else f" ({self.dropped} dropped)"
        return (
            f"{self.source}: {self.rows} rows{dropped}; tokens per row: prompt "
            f"{self.prompt_mean:.1f} mean / {self.prompt_max} max, response {self.response_mean:.1f} mean / "
            f"{self.response_max} max; unknown tokens {unknown}; truncated rows: prompt "
            f"{_percent(self.prompt_truncated)} (max_prompt_length {self.max_prompt_length}), response "
            f"{_percent(self.response_truncated)} (max_length {self.max_length})"
        )


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def data_report(examples: Sequence[Example], tokenizer, *, source: str, dropped: int | None, max_length: int,
                max_prompt_length: int | None) -> DataReport:
    """The report of `examples` (as `tokenize_rows` returns them for the file `source`, with its `dropped`
    count, None when not known) under `tokenizer`, truncated at `max_length` / `max_prompt_length`."""
    lengths = [_untruncated(e) for e in examples]
    prompts = [p for p, _, _ in lengths]
    responses = [n for _, c, r in lengths for n in (c, r)]
    rows = max(len(examples), 1)
    return DataReport(
        source=source, rows=len(examples), dropped=dropped,
        prompt_mean=sum(prompts) / rows, prompt_max=max(prompts, default=0),
        response_mean=sum(responses) / max(len(responses), 1), response_max=max(responses, default=0),
        unknown_share=unknown_share(examples, tokenizer), unknown_token=getattr(tokenizer, "unk_token", None),
        tokenizer=getattr(tokenizer, "name_or_path", None) or None,
        prompt_truncated=sum(len(e.prompt_ids) < p for e, (p, _, _) in zip(examples, lengths)) / rows,
        response_truncated=sum(len(e.chosen_ids) < c or len(e.rejected_ids) < r
                               for e, (_, c, r) in zip(examples, lengths)) / rows,
        max_length=max_length, max_prompt_length=max_prompt_length,
    )


def _untruncated(example: Example) -> tuple[int, int, int]:
    if example.untruncated_lengths is not None:
        return example.untruncated_lengths
    return len(example.prompt_ids), len(example.chosen_ids), len(example.rejected_ids)


def unknown_token_id(tokenizer) -> int | None:
    """The tokenizer's unknown token id, or None when it has none of its own: none at all, or one that is also its
    EOS, BOS or pad token (GPT-2's `<|endoftext|>`), which its text never tokenises to."""
    unk = getattr(tokenizer, "unk_token_id", None)
    others = {getattr(tokenizer, f"{name}_token_id", None) for name in ("eos", "bos", "pad")}
    return None if unk is None or unk in others else unk


def unknown_share(examples: Sequence[Example], tokenizer) -> float | None:
    """The share of the examples' text tokens (every id but the special ones other than the unknown token) that
    are the tokenizer's unknown token; None when it has none of its own (`unknown_token_id`), 0 when there is no
    text token."""
    unk = unknown_token_id(tokenizer)
    if unk is None:
        return None
    specials = np.array(sorted(special_token_ids(tokenizer) - {unk}), dtype=np.int64)
    unknown = text = 0
    for start in range(0, len(examples), CHUNK):
        part = examples[start:start + CHUNK]
        ids = np.fromiter(chain.from_iterable(chain.from_iterable(
            (e.prompt_ids, e.chosen_ids, e.rejected_ids) for e in part)), dtype=np.int64)
        ids = ids[~np.isin(ids, specials)]
        unknown += int((ids == unk).sum())
        text += int(ids.size)
    return unknown / text if text else 0.0


def unknown_tokens_check(report: DataReport, *, option: str) -> str | None:
    """InputError when more than `UNKNOWN_REFUSE` of the report's text tokens are unknown; the warning text
    when more than `UNKNOWN_WARN` are; else None. `option` names the config key of the file."""
    share = report.unknown_share
    if share is None or share <= UNKNOWN_WARN:
        return None
    what = (f"{option} {report.source}: {_percent(share)} of the text tokens are the tokenizer's unknown token "
            f"{report.unknown_token}")
    tokenizer = f"the tokenizer ({report.tokenizer})" if report.tokenizer else "the tokenizer"
    if share > UNKNOWN_REFUSE:
        raise InputError(
            f"{what} (more than {_percent(UNKNOWN_REFUSE)}): {tokenizer} cannot read this data and the run would "
            "learn nothing from it; expected text in the tokenizer's vocabulary (the model's own tokenizer, and "
            "data in its language)"
        )
    return (f"{what} (more than {_percent(UNKNOWN_WARN)}): {tokenizer} cannot read part of this data; check "
            "that it is the model's own tokenizer and the data in its language")
