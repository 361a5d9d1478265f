"""Where a config value came from (file line, command line) and the "did you mean" of an unknown key."""

from __future__ import annotations

import pytest

from isdaa.config import TrainConfig, load_config, option_help
from isdaa.config.sources import CommandLine, key_lines, suggest_keys
from isdaa.errors import InputError

PATHS = [row.key for row in option_help(TrainConfig)]
ALIASES = {"loss": "objective.loss", "beta": "objective.beta", "weighting": "objective.weighting"}


def test_key_lines_give_every_nested_key_its_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("# a comment\nseed: 1\nobjective:\n  loss: ipo\n\n  beta: 0.2\nmodel:\n  init: {hidden_size: 8}\n")
    assert key_lines(cfg) == {"seed": 2, "objective": 3, "objective.loss": 4, "objective.beta": 6, "model": 7,
                              "model.init": 8, "model.init.hidden_size": 8}


@pytest.mark.parametrize("key, aliases, expect", [
    ("stop_at_kl", None, ["monitor.stop_at_kl"]),  # the option's own name, in another section
    ("keep_best", None, ["monitor.keep_best"]),  # not keep_last: the same last part wins over a close spelling
    ("optim.beta", None, ["objective.beta"]),
    ("monitor.evry", None, ["monitor.every"]),
    ("los", ALIASES, ["loss"]),  # the alias, not 'plots'
    ("los", None, ["objective.loss"]),  # in a file: the option's last part
    ("weigting", ALIASES, ["weighting"]),
    ("max_step", None, ["max_steps"]),
    ("zzzz", None, []),
])
def test_suggestions(key, aliases, expect):
    assert suggest_keys(key, PATHS, aliases) == expect


def test_overrides_passed_as_a_dict_are_not_called_the_command_line():
    with pytest.raises(InputError) as info:
        load_config(TrainConfig, None, {"monitor.evry": 4})
    assert str(info.value) == "unknown config key 'monitor.evry' (did you mean 'monitor.every'?)"


def test_command_line_overrides_compare_equal_to_their_pairs():
    assert CommandLine([("a", "1")], typed={"a": "--a"}) == [("a", "1")]
