"""Reading argv: `--config FILE`, dotted overrides, `--key=value`, bare flags and the short aliases."""

from __future__ import annotations

import pytest

from isdaa.cli.argv import config_args, parse_overrides, split_config
from isdaa.errors import InputError


def test_overrides_aliases_and_bare_flags():
    assert parse_overrides(["--objective.beta", "0.1", "--loss=ipo", "--is-eps", "2", "--lora", "--progress", "false"]) == [
        ("objective.beta", "0.1"), ("objective.loss", "ipo"), ("objective.is_eps", "2"), ("lora.enabled", "true"),
        ("progress", "false"),
    ]


def test_config_path_is_split_off():
    assert split_config(["--beta", "1", "--config", "run.yaml"]) == ("run.yaml", ["--beta", "1"])
    assert config_args(["--config=run.yaml", "--lr", "1e-3"]) == ("run.yaml", [("optim.lr", "1e-3")])


@pytest.mark.parametrize("args, expect", [
    (["--config"], "option --config: expected a YAML file path"),
    (["--config", "--beta", "1"], "option --config: expected a YAML file path"),
    (["run.yaml"], "unexpected argument 'run.yaml'"),
])
def test_bad_argv(args, expect):
    with pytest.raises(InputError, match=expect):
        config_args(args)


# ---- what the config loader makes of the command line (issue 23: findings 5, 6 and 3's dotted keys) ------------


def _load(args: list[str]):
    from isdaa.config import TrainConfig, load_config

    return load_config(TrainConfig, *config_args(args))


def _error(args: list[str]) -> str:
    with pytest.raises(InputError) as info:
        _load(args)
    return str(info.value)


@pytest.mark.parametrize("args, option", [
    (["--output_dir"], "--output_dir"),  # the last argument
    (["--train-file"], "--train-file"),  # an alias, named as typed
    (["--output_dir", "--max_steps", "2"], "--output_dir"),  # followed by another option
    (["--objective.beta", "--loss", "ipo"], "--objective.beta"),
    (["--model.init"], "--model.init"),
])
def test_an_option_without_a_value_is_refused_naming_it(args, option):
    expected = {"--objective.beta": "float", "--model.init": "dict"}.get(option, "str")
    assert _error(args) == f"command line: option {option}: no value given (expected {expected} after it)"


def test_an_on_off_option_alone_still_means_true():
    config = _load(["--progress", "--lora", "--overwrite", "--max_steps", "2", "--monitor.keep_best"])
    assert config.progress is True and config.lora.enabled is True and config.overwrite is True
    assert config.monitor.keep_best is True and config.max_steps == 2
    assert _load(["--progress", "false"]).progress is False


@pytest.mark.parametrize("typed, message", [
    ("--monitor.evry", "command line: unknown option --monitor.evry; did you mean --monitor.every?"),
    ("--weigting", "command line: unknown option --weigting; did you mean --weighting (= --objective.weighting)?"),
    ("--betta", "command line: unknown option --betta; did you mean --beta (= --objective.beta)?"),
    ("--stop_at_kl", "command line: unknown option --stop_at_kl; did you mean --monitor.stop_at_kl?"),
    ("--los", "command line: unknown option --los; did you mean --loss (= --objective.loss)?"),
    ("--keep_best", "command line: unknown option --keep_best; did you mean --monitor.keep_best?"),
    ("--optim.beta", "command line: unknown option --optim.beta; did you mean --objective.beta?"),
    ("--max-step", "command line: unknown option --max-step; did you mean --max_steps?"),
    ("--xyzzy", "command line: unknown option --xyzzy; --help lists every option"),
])
def test_unknown_options_are_blamed_on_the_command_line_with_a_suggestion(typed, message):
    assert _error([typed, "1"]) == message


def test_command_line_mistakes_are_not_blamed_on_the_config_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("output_dir: runs/x\nobjective:\n  beta: 0.1\n")
    assert _error(["--config", str(cfg), "--monitor.evry", "4"]) == (
        "command line: unknown option --monitor.evry; did you mean --monitor.every?")
    assert _error(["--config", str(cfg), "--is-eps", "-1"]) == (
        "command line: option objective.is_eps must be > 0, got -1.0 (given as --is-eps)")


def test_file_mistakes_name_the_file_and_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("output_dir: runs/x\nmonitor:\n  every: 2\n  evry: 4\n")
    assert _error(["--config", str(cfg)]) == (
        f"{cfg}:4: unknown config key 'monitor.evry' (did you mean 'monitor.every'?)")
    cfg.write_text("output_dir: runs/x\nobjective:\n  loss: ipo\n  beta: -0.1\n")
    assert _error(["--config", str(cfg)]) == f"{cfg}:4: option objective.beta must be > 0, got -0.1"
    cfg.write_text("batch_size: eight\n")
    assert _error(["--config", str(cfg)]) == f"{cfg}:1: option batch_size: expected int, got 'eight'"
    assert _load(["--config", str(cfg), "--batch_size", "4"]).batch_size == 4  # the command line wins


def test_model_init_on_the_command_line_merges_over_the_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  init: {vocab_size: 40, hidden_size: 32, num_hidden_layers: 2}\n")
    merged = _load(["--config", str(cfg), "--model.init", "{hidden_size: 64}"]).model.init
    assert merged == {"vocab_size": 40, "hidden_size": 64, "num_hidden_layers": 2}
    one_key = _load(["--config", str(cfg), "--model.init.hidden_size", "64", "--model.init.rms_norm_eps", "1e-5"])
    assert one_key.model.init == {"vocab_size": 40, "hidden_size": 64, "num_hidden_layers": 2, "rms_norm_eps": 1e-5}
    assert _load(["--config", str(cfg), "--model.init", "null", "--model", "m"]).model.init is None
    assert _load(["--objective.hparams.gamma", "0.5"]).objective.hparams == {"gamma": 0.5}
    on_the_line = _load(["--model.init", '{"vocab_size": 40, "hidden_size": 32}', "--model.init.hidden_size", "64"])
    assert on_the_line.model.init == {"vocab_size": 40, "hidden_size": 64}
