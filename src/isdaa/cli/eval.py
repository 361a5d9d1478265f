"""`isdaa eval [--config FILE] [--key value ...]`: an EvalConfig -> `isdaa.eval.evaluate`."""

from __future__ import annotations

import sys

from isdaa.cli.argv import config_args
from isdaa.config import EvalConfig, load_config
from isdaa.eval import evaluate
from isdaa.eval.evaluate import setting_text

EVAL_SUMMARY_KEYS = ("gold_mean", "gold_se", "win_rate", "kl_k3", "kl_k3_se", "kl_k1", "length_mean")


def _settings(sampling: dict) -> str:
    return ", ".join(f"{key} {setting_text(value)}" for key, value in sampling.items())


def eval_command(args: list[str]) -> int:
    """`isdaa eval [--config FILE] [--key value ...]` (its --help: `isdaa.cli.help.CONFIG_COMMANDS`): the summary
    and the sampling settings (beside the policy's run's monitor's, when it had one) on stdout; why kl is null, or
    how these samples differ from the monitor's, on stderr."""
    config = load_config(EvalConfig, *config_args(args))
    results = evaluate(config)
    print("  ".join(f"{k}={results[k]:.4g}" for k in EVAL_SUMMARY_KEYS if isinstance(results.get(k), (int, float))))
    monitor = results.get("monitor_sampling")
    print(f"isdaa: sampled with {_settings(results['sampling'])}"
          + (f" (the run's monitor: {_settings(monitor)})" if monitor else ""))
    if results.get("reference_model"):
        print(f"isdaa: kl against the reference {results['reference_model']}")
    for note in ("kl_note", "sampling_note"):
        if results.get(note):
            print(f"isdaa: {results[note]}", file=sys.stderr)
    if config.output:
        print(f"isdaa: results written to {config.output}")
    return 0
