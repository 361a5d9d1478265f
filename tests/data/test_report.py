"""The pre-flight data report: token counts, unknown tokens, truncation; refusal of data the tokenizer cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from isdaa.config import ModelConfig
from isdaa.data import tokenize_rows
from isdaa.data.report import UNKNOWN_REFUSE, data_report, unknown_tokens_check
from isdaa.errors import InputError
from isdaa.modeling.loading import load_tokenizer
from isdaa.modeling.tiny import word_tokenizer

EXAMPLE_TOKENIZER = Path(__file__).resolve().parents[2] / "examples" / "tiny" / "tokenizer"  # 40 words
ENGLISH = [
    {"prompt": "Tell me something about the weather.", "chosen": "It is lovely and calm today.", "rejected": "No."},
    {"prompt": "What should I cook tonight?", "chosen": "A warm soup with fresh bread.", "rejected": "Nothing at all"},
    {"prompt": "Is the train station far?", "chosen": "About ten minutes on foot.", "rejected": "Go away"},
]


def _report(rows, tok, **limits):
    limits = {"max_length": 32, "max_prompt_length": 16, **limits}
    examples, dropped = tokenize_rows(rows, tok, source="pairs.jsonl", **limits)
    return data_report(examples, tok, source="pairs.jsonl", dropped=dropped, **limits)


def test_english_through_the_example_tokenizer_is_refused():
    """The tiny example's 40-word tokenizer reads English as <unk>: more than half unknown is refused, naming the
    option, the file, the share and the tokenizer."""
    tok = load_tokenizer(ModelConfig(tokenizer=str(EXAMPLE_TOKENIZER), init={}))
    report = _report(ENGLISH, tok)
    assert report.unknown_share > UNKNOWN_REFUSE and report.unknown_token == "<unk>"
    with pytest.raises(InputError) as err:
        unknown_tokens_check(report, option="data.train_file")
    message = str(err.value)
    assert message.startswith("data.train_file pairs.jsonl: 100.0% of the text tokens are the tokenizer's unknown "
                              "token <unk> (more than 50.0%)")
    assert str(EXAMPLE_TOKENIZER) in message


def test_counts_unknown_share_and_truncation_by_hand():
    tok = word_tokenizer(["a", "b", "c"])
    rows = [
        {"prompt": "a b c a b c", "chosen": "a zz", "rejected": "b"},  # prompt 6, cut to 4; 'zz' is unknown
        {"prompt": "a", "chosen": "a b c a b c a b", "rejected": "c"},  # chosen 8 + EOS, cut to 7
    ]
    report = _report(rows, tok, max_length=8, max_prompt_length=4)
    assert (report.rows, report.dropped) == (2, 0)
    assert (report.prompt_mean, report.prompt_max) == (3.5, 6)
    # responses with their EOS, before truncation: 3, 2, 9, 2
    assert (report.response_mean, report.response_max) == (4.0, 9)
    assert report.prompt_truncated == 0.5 and report.response_truncated == 0.5
    # text tokens as trained (EOS left out): row 1: 4 + 2 + 1, row 2: 1 + 7 + 1 -> 1 unknown of 16
    assert report.unknown_share == 1 / 16
    line = report.line()
    assert line.startswith("pairs.jsonl: 2 rows (0 dropped); tokens per row: prompt 3.5 mean / 6 max, response "
                           "4.0 mean / 9 max; unknown tokens 6.2% (<unk>); truncated rows: prompt 50.0% "
                           "(max_prompt_length 4), response 50.0% (max_length 8)")
    warning = unknown_tokens_check(report, option="data.train_file")
    assert warning.startswith("data.train_file pairs.jsonl: 6.2% of the text tokens are the tokenizer's unknown "
                              "token <unk> (more than 5.0%)")


def test_clean_data_gets_no_warning():
    tok = word_tokenizer(["a", "b", "c"])
    report = _report([{"prompt": "a b", "chosen": "c", "rejected": "a"}], tok)
    assert report.unknown_share == 0.0 and unknown_tokens_check(report, option="data.train_file") is None


def test_a_tokenizer_without_unknown_token_has_no_share():
    tok = word_tokenizer(["a", "b", "c"])
    examples, _ = tokenize_rows([{"prompt": "a b", "chosen": "c", "rejected": "a"}], tok, max_length=8,
                                max_prompt_length=4)
    for unk in (None, tok.eos_token):  # a byte-level BPE reads any text; GPT-2's unknown token is its EOS
        tok.unk_token = unk
        report = data_report(examples, tok, source="x", dropped=0, max_length=8, max_prompt_length=4)
        assert report.unknown_share is None and "n/a (the tokenizer has no unknown token of its own)" in report.line()
        assert unknown_tokens_check(report, option="data.train_file") is None
