"""`isdaa train / eval / lab / demo`.

Each command reads an optional YAML (`--config`) and dotted overrides (`--objective.beta 0.01`, or the
short aliases `--beta 0.01 --loss ipo --weighting is --is-eps 1.0`). Exit codes: 0 ok, 2 bad input or
config (one line on stderr, no traceback), 1 internal error or a run stopped by non-finite steps.
"""

from __future__ import annotations

import sys

from isdaa.errors import InputError

USAGE = """usage: isdaa <command> [--config FILE] [--key value ...]

commands:
  train   train a policy with a DAA objective (optionally importance-weighted)
  eval    sample from a policy, score with a gold scorer, estimate KL to a reference
  lab     run the over-optimization lab sweep (methods x beta x seeds in a controlled world)
  demo    the lab's demo subset (the main job; <= 10 minutes on 2 CPU cores)
  pairs   sample completions from a model, score them with a gold scorer, write labelled TRL pairs
  models  prepare a real pretrained model offline (isdaa models prepare smollm2)

`isdaa <command> --help` lists every option with its default.
"""


def _help(command: str, cls, aliases: dict | None = None) -> str:
    from isdaa.config import describe

    lines = [f"usage: isdaa {command} [--config FILE] [--key value ...]", "", "options (dotted keys; YAML uses the same tree):"]
    for key, tp, default in describe(cls):
        lines.append(f"  --{key:<34} {tp:<6} default: {default!r}")
    if aliases:
        lines += ["", "short aliases:"] + [f"  --{a.replace('_', '-'):<20} = --{k}" for a, k in aliases.items()]
    return "\n".join(lines)


def _split_config(args: list[str]) -> tuple[str | None, list[str]]:
    path, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--config":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError("option --config: expected a YAML file path")
            path, i = args[i + 1], i + 2
        elif args[i].startswith("--config="):
            path, i = args[i].split("=", 1)[1], i + 1
        else:
            rest.append(args[i])
            i += 1
    return path, rest


def _train(args: list[str]) -> int:
    from isdaa.config import ALIASES, TrainConfig, load_config, parse_overrides

    if "-h" in args or "--help" in args:
        print(_help("train", TrainConfig, ALIASES))
        return 0
    path, rest = _split_config(args)
    config = load_config(TrainConfig, path, parse_overrides(rest))
    from isdaa.training.trainer import train

    result = train(config)
    print(f"isdaa: trained {result.steps} steps ({result.skipped_steps} skipped); final model in {result.final_dir}")
    return 0


def _eval(args: list[str]) -> int:
    from isdaa.config import EvalConfig, load_config, parse_overrides

    if "-h" in args or "--help" in args:
        print(_help("eval", EvalConfig))
        return 0
    path, rest = _split_config(args)
    config = load_config(EvalConfig, path, parse_overrides(rest))
    from isdaa.eval import evaluate

    results = evaluate(config)
    keys = ("gold_mean", "gold_se", "win_rate", "kl_k3", "kl_k3_se", "kl_k1", "length_mean")
    print("  ".join(f"{k}={results[k]:.4g}" for k in keys if isinstance(results.get(k), (int, float))))
    if config.output:
        print(f"isdaa: results written to {config.output}")
    return 0


def _lab(args: list[str], demo: bool = False) -> int:
    from isdaa.lab import lab_main

    return lab_main(args, demo=demo)


def _pairs(args: list[str]) -> int:
    from isdaa.config import PairsConfig, load_config, parse_overrides

    if "-h" in args or "--help" in args:
        print(_help("pairs", PairsConfig, {"model": "model.name_or_path"}))
        return 0
    path, rest = _split_config(args)
    config = load_config(PairsConfig, path, parse_overrides(rest))
    from isdaa.generation.pairs import pairs_main

    stats = pairs_main(config)
    left = stats["left_out_identical"] + stats["left_out_empty"] + stats["left_out_ties"]
    means = ""
    if stats["chosen_score_mean"] is not None:
        means = f"; mean score chosen {stats['chosen_score_mean']:.3f}, rejected {stats['rejected_score_mean']:.3f}"
    print(
        f"isdaa: {stats['n_pairs']} pairs from {stats['n_prompts']} prompts ({left} left out){means}; "
        f"{stats['seconds']:.0f}s; written to {stats['out']}"
    )
    return 0


def _models(args: list[str]) -> int:
    from isdaa.modeling.prepare import models_main

    return models_main(args)


COMMANDS = {"train": _train, "eval": _eval, "lab": _lab, "demo": lambda a: _lab(a, demo=True), "pairs": _pairs, "models": _models}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except InputError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("isdaa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: say what broke, exit 1
        from isdaa.training.trainer import TrainingStopped

        if isinstance(exc, TrainingStopped):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
