"""`isdaa pairs [--config FILE] [--key value ...]`: a PairsConfig -> `isdaa.generation.pairs.pairs_main`."""

from __future__ import annotations

from isdaa.cli.argv import config_args
from isdaa.config import PairsConfig, load_config
from isdaa.generation.pairs import pairs_main


def pairs_command(args: list[str]) -> int:
    """`isdaa pairs [--config FILE] [--key value ...]` (its --help: `isdaa.cli.help.CONFIG_COMMANDS`)."""
    stats = pairs_main(load_config(PairsConfig, *config_args(args)))
    left = stats["left_out_identical"] + stats["left_out_empty"] + stats["left_out_ties"]
    means = ""
    if stats["chosen_score_mean"] is not None:
        means = f"; mean score chosen {stats['chosen_score_mean']:.3f}, rejected {stats['rejected_score_mean']:.3f}"
    print(
        f"isdaa: {stats['n_pairs']} pairs from {stats['n_prompts']} prompts ({left} left out){means}; "
        f"{stats['seconds']:.0f}s; written to {stats['out']}"
    )
    return 0
