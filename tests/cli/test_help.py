"""`isdaa <command> --help` explains every option: key, type, default, one-line help and limit."""

from __future__ import annotations

import dataclasses

import pytest

from isdaa.cli import main
from isdaa.config import EvalConfig, LabConfig, PairsConfig, TrainConfig, option_help

CONFIGS = {"train": TrainConfig, "eval": EvalConfig, "pairs": PairsConfig, "lab": LabConfig, "demo": LabConfig}


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_help_explains_every_option(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for row in option_help(CONFIGS[command]):
        assert row.help and "\n" not in row.help, row.key
        assert f"--{row.key} " in text and row.help in text, row.key
        if row.rule:
            assert f"must be {row.rule}" in text, row.key


def test_limits_stand_next_to_their_fields():
    rules = {row.key: row.rule for row in option_help(TrainConfig)}
    assert rules["objective.beta"] == "> 0" and rules["optim.warmup_ratio"] == "in [0, 1)"
    assert rules["mixed_precision"] == "no, bf16 or fp16"
    assert rules["objective.label_smoothing"] == ""  # checked by isdaa.objectives, not by the config
    assert rules["objective.loss"] == "" and rules["objective.weighting"] == ""


def test_eval_takes_a_pad_token():
    assert {f.name: f.default for f in dataclasses.fields(EvalConfig)}["pad_token"] is None


def test_lab_help(capsys):
    assert main(["demo", "--help"]) == 0
    assert "--world.p_stop" in capsys.readouterr().out


def test_top_level_help(capsys):
    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out
