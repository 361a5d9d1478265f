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


def test_train_help_is_grouped_by_section_common_options_first(capsys):
    assert main(["train", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line.split(":")[0] for line in lines
               if line and not line.startswith((" ", "usage", "Every"))]
    assert headers == ["common options", "model", "lora", "data", "objective", "optim", "monitor", "run"]
    options = [line.split()[0] for line in lines if line.startswith("  --")]
    assert options[:4] == ["--model.name_or_path", "--model.init", "--model.tokenizer", "--data.train_file"]
    assert len(options) == len(set(options)) == len(option_help(TrainConfig))  # each option once
    section_of = {}
    for line in lines:
        if line and not line.startswith(" "):
            section = line.split(":")[0]
        elif line.startswith("  --"):
            section_of[line.split()[0][2:]] = section
    assert section_of["monitor.every"] == "monitor" and section_of["optim.adam_eps"] == "optim"
    assert section_of["save_every"] == "run" and section_of["objective.beta"] == "common options"
    assert "  --objective.beta (--beta)" in "\n".join(lines)  # the short alias next to its option
