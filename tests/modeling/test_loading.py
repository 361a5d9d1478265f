"""`load_tokenizer`: the one pad-token rule of train, eval, pairs and the lab."""

import pytest
from conftest import WORDS

from isdaa.config import ModelConfig
from isdaa.errors import InputError
from isdaa.modeling.loading import load_tokenizer
from isdaa.modeling.tiny import word_tokenizer


def _saved(tmp_path, **unset):
    tok = word_tokenizer(WORDS)
    for name in unset:
        setattr(tok, name, None)
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


def test_tokenizer_with_pad_token_loads(tmp_path):
    tok = load_tokenizer(ModelConfig(name_or_path="unused", tokenizer=_saved(tmp_path)))
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>"


def test_missing_pad_token_is_refused_naming_the_option(tmp_path):
    path = _saved(tmp_path, pad_token=None)
    with pytest.raises(InputError, match=r"has no pad token; set model.pad_token \(e.g. --model.pad_token '<eos>'\)"):
        load_tokenizer(ModelConfig(name_or_path="unused", tokenizer=path))


def test_pad_token_option_fills_a_missing_pad_token(tmp_path):
    path = _saved(tmp_path, pad_token=None)
    tok = load_tokenizer(ModelConfig(name_or_path="unused", tokenizer=path, pad_token="<eos>"))
    assert tok.pad_token_id == tok.eos_token_id


def test_missing_eos_is_refused(tmp_path):
    path = _saved(tmp_path, eos_token=None)
    with pytest.raises(InputError, match="has no eos token"):
        load_tokenizer(ModelConfig(name_or_path="unused", tokenizer=path))
