"""`isdaa train [--config FILE] [--key value ...]`: a TrainConfig -> `isdaa.training.run.train`."""

from __future__ import annotations

from isdaa.cli.argv import config_args
from isdaa.config import TrainConfig, load_config
from isdaa.training.run import train


def train_command(args: list[str]) -> int:
    """`isdaa train [--config FILE] [--key value ...]` (its --help: `isdaa.cli.help.CONFIG_COMMANDS`): the run
    with its monitor and, at the end, its plots (`isdaa.training.run`)."""
    result = train(load_config(TrainConfig, *config_args(args)))
    if result.already_finished:  # the run said so (one line): nothing was trained or written
        return 0
    print(f"isdaa: trained {result.steps} steps ({result.skipped_steps} skipped); final model in {result.final_dir}")
    return 0
