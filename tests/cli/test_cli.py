"""The CLI end to end: train from a local model directory, evaluate against it, --help, exit codes."""

from __future__ import annotations

import json

import pytest

from conftest import WORDS
from isdaa.cli import main
from isdaa.modeling.tiny import tiny_llama, word_tokenizer


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    tok = word_tokenizer(WORDS)
    tiny_llama(len(tok), seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_train_then_eval_through_the_cli(base_model_dir, pairs_file, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--model", str(base_model_dir), "--train-file", str(pairs_file), "--output_dir", str(run),
                 "--max_steps", "6", "--batch_size", "8", "--lr", "1e-2", "--beta", "0.5", "--weighting", "is",
                 "--progress", "false", "--data.max_length", "32", "--data.max_prompt_length", "16"])
    assert code == 0
    assert "trained 6 steps" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    code = main(["eval", "--policy", str(run / "final"), "--reference", str(base_model_dir), "--prompts", str(pairs_file),
                 "--scorer", "length", "--n_samples", "2", "--max_prompts", "8", "--max_new_tokens", "8",
                 "--output", str(out), "--progress", "false"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["n_samples"] == 16 and res["kl_biased"] is False
    assert res["kl_k3"] > 0  # the trained policy moved away from its reference
    same = tmp_path / "same.json"
    assert main(["eval", "--policy", str(base_model_dir), "--reference", str(base_model_dir), "--prompts", str(pairs_file),
                 "--scorer", "length", "--max_prompts", "4", "--max_new_tokens", "6", "--output", str(same),
                 "--progress", "false"]) == 0
    assert json.loads(same.read_text())["kl_k1"] == 0.0


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_lists_every_option_with_its_default(command, capsys):
    from isdaa.config import EvalConfig, TrainConfig, option_help

    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for row in option_help(TrainConfig if command == "train" else EvalConfig):
        assert f"--{row.key} " in text and repr(row.default) in text, row.key


def test_unknown_command_and_no_arguments(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown command 'trian' (did you mean 'train'?); expected one of train, eval, lab, demo, pairs, "
        "models, logps, plot\n")
    assert main(["frobnicate"]) == 2
    assert "did you mean" not in capsys.readouterr().err
    assert main([]) == 2


def test_version(capsys):
    import isdaa

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"isdaa {isdaa.__version__}\n"


def test_model_init_one_key_from_the_command_line_trains(tokenizer_dir, pairs_file, tmp_path, capsys):
    """`--model.init.hidden_size 64` over a `--model.init` mapping: merged, coerced to int, and the estimate logged."""
    init = {"vocab_size": len(WORDS) + 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    run = tmp_path / "run"
    code = main(["train", "--model.init", json.dumps(init), "--model.init.hidden_size", "64",
                 "--model.tokenizer", str(tokenizer_dir), "--train-file", str(pairs_file), "--output_dir", str(run),
                 "--max_steps", "1", "--batch_size", "4", "--progress", "false", "--plots", "false",
                 "--data.max_length", "32", "--data.max_prompt_length", "16", "--num_threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "isdaa: model.init: a random Llama of 33,728 parameters" in out
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["intermediate_size"] == 64 and config["num_hidden_layers"] == 1
