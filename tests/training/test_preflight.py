"""The data report a run prints before step 1, and the refusal of data its tokenizer cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl

import isdaa
from isdaa.cli import main
from isdaa.errors import InputError
from isdaa.training.trainer import fit

ENGLISH = [{"prompt": f"Tell me about the {thing}, please.", "chosen": f"The {thing} is lovely {k} times over.",
            "rejected": "No" + "!" * k} for k, thing in enumerate(["weather", "garden", "book", "station"] * 4)]


def test_a_run_prints_its_data_report_before_step_one(tiny_config, pairs_file, capsys):
    cfg = tiny_config(max_steps=1, **{"data.eval_file": str(pairs_file)})
    fit(cfg)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"isdaa: data: {pairs_file}: 64 rows (0 dropped); tokens per row: prompt ")
    assert "unknown tokens 0.0% (<unk>); truncated rows: prompt 0.0% (max_prompt_length 16), response 0.0% " \
           "(max_length 32)" in out[0]
    assert out[1].startswith(f"isdaa: data: {pairs_file}: 64 rows; tokens per row")  # the eval file


def test_english_through_a_word_tokenizer_is_refused_before_anything_is_written(tiny_config, tmp_path,
                                                                                 tokenizer_dir):
    data = write_jsonl(tmp_path / "english.jsonl", ENGLISH)
    cfg = tiny_config(**{"data.train_file": str(data), "objective.weighting": "is"})
    with pytest.raises(InputError) as err:
        isdaa.train(cfg)
    assert str(err.value).startswith(f"data.train_file {data}: ")
    assert f"of the text tokens are the tokenizer's unknown token <unk> (more than 50.0%): the tokenizer " \
           f"({tokenizer_dir}) cannot read this data" in str(err.value)
    assert not Path(cfg.output_dir).exists()


def test_some_unknown_words_are_a_warning(tiny_config, tmp_path, capsys):
    rows = [dict(r, chosen=r["chosen"] + " hello") for r in make_pairs(16)]
    cfg = tiny_config(max_steps=1, **{"data.train_file": str(write_jsonl(tmp_path / "mixed.jsonl", rows))})
    fit(cfg)
    err = capsys.readouterr().err
    assert f"isdaa: warning: data.train_file {tmp_path / 'mixed.jsonl'}: " in err
    assert "of the text tokens are the tokenizer's unknown token <unk> (more than 5.0%)" in err


def test_through_the_cli_it_is_exit_2_and_one_line(tmp_path, tokenizer_dir, capsys):
    data = write_jsonl(tmp_path / "english.jsonl", ENGLISH)
    rc = main(["train", "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)), "--model.tokenizer",
               str(tokenizer_dir), "--data.train_file", str(data), "--output_dir", str(tmp_path / "run"),
               "--data.max_length", "32", "--data.max_prompt_length", "16", "--batch_size", "4", "--progress",
               "false", "--weighting", "is"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: data.train_file {data}: ") and "(more than 50.0%)" in err
    assert not (tmp_path / "run").exists()
