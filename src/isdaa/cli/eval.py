"""`isdaa eval [--config FILE] [--key value ...]`: an EvalConfig -> `isdaa.eval.evaluate`."""

from __future__ import annotations

from isdaa.cli.argv import config_args
from isdaa.config import EvalConfig, load_config
from isdaa.eval import evaluate

EVAL_SUMMARY_KEYS = ("gold_mean", "gold_se", "win_rate", "kl_k3", "kl_k3_se", "kl_k1", "length_mean")


def eval_command(args: list[str]) -> int:
    """`isdaa eval [--config FILE] [--key value ...]` (its --help: `isdaa.cli.help.CONFIG_COMMANDS`)."""
    config = load_config(EvalConfig, *config_args(args))
    results = evaluate(config)
    print("  ".join(f"{k}={results[k]:.4g}" for k in EVAL_SUMMARY_KEYS if isinstance(results.get(k), (int, float))))
    if config.output:
        print(f"isdaa: results written to {config.output}")
    return 0
