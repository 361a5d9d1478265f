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
