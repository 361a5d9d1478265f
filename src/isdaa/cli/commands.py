"""One function per command: argv -> config -> one library call -> a short summary on stdout; returns the exit code."""

from __future__ import annotations

from isdaa.cli.argv import ALIASES, config_args, wants_help
from isdaa.cli.help import config_help, lab_help
from isdaa.config import EvalConfig, PairsConfig, TrainConfig, load_config
from isdaa.eval import evaluate
from isdaa.generation.pairs import pairs_main
from isdaa.lab import load_lab_config, run_lab
from isdaa.training.trainer import train

EVAL_SUMMARY_KEYS = ("gold_mean", "gold_se", "win_rate", "kl_k3", "kl_k3_se", "kl_k1", "length_mean")


def train_command(args: list[str]) -> int:
    """`isdaa train [--config FILE] [--key value ...]`."""
    if wants_help(args):
        print(config_help("train", TrainConfig, ALIASES))
        return 0
    result = train(load_config(TrainConfig, *config_args(args)))
    print(f"isdaa: trained {result.steps} steps ({result.skipped_steps} skipped); final model in {result.final_dir}")
    return 0


def eval_command(args: list[str]) -> int:
    """`isdaa eval [--config FILE] [--key value ...]`."""
    if wants_help(args):
        print(config_help("eval", EvalConfig))
        return 0
    config = load_config(EvalConfig, *config_args(args))
    results = evaluate(config)
    print("  ".join(f"{k}={results[k]:.4g}" for k in EVAL_SUMMARY_KEYS if isinstance(results.get(k), (int, float))))
    if config.output:
        print(f"isdaa: results written to {config.output}")
    return 0


def pairs_command(args: list[str]) -> int:
    """`isdaa pairs [--config FILE] [--key value ...]`."""
    if wants_help(args):
        print(config_help("pairs", PairsConfig, {"model": "model.name_or_path"}))
        return 0
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


def lab_command(args: list[str], demo: bool = False) -> int:
    """`isdaa lab [--config FILE] [--key value ...]`; a --config file replaces the packaged default.yaml."""
    if wants_help(args):
        print(lab_help(load_lab_config(demo=demo), demo))
        return 0
    path, overrides = config_args(args)
    run_lab(load_lab_config(path, overrides, demo=demo))
    return 0


def demo_command(args: list[str]) -> int:
    """`isdaa demo [...]`: the lab with the packaged demo.yaml."""
    return lab_command(args, demo=True)
