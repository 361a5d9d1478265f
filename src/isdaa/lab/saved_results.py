"""A finished (or interim) sweep's results read back for the cross-world comparisons (`isdaa lab compare`):
its `results.json`, or — for a committed report that keeps only its tables — the same structure rebuilt from its
`results.csv`, `lab.yaml` (the sweep's config) and `reference_gold.json` ({"gold": the reference's gold})."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from isdaa.errors import InputError

__all__ = ["read_results", "results_from_csv"]


def read_results(directory) -> dict:
    """The results of the lab directory `directory` (β as floats), from `results.json` or `results.csv`."""
    directory = Path(directory)
    path = directory / "results.json"
    if not path.is_file() and (directory / "results.csv").is_file():
        results = results_from_csv(directory)
    else:
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a lab results file ({type(exc).__name__}: {exc})") from None
    for run in results["runs"]:
        run["beta"] = float(run["beta"])
    return results


def _number(text: str):
    return float(text) if text not in ("", "None", "nan") else None


def results_from_csv(directory: Path) -> dict:
    """`results.json`'s fields the summaries read (config world, methods, reference gold, runs with their
    evaluations) from `results.csv` (one row per run × evaluation), `lab.yaml` and `reference_gold.json`."""
    try:
        config = yaml.safe_load((directory / "lab.yaml").read_text(encoding="utf-8"))
        ref_gold = float(json.loads((directory / "reference_gold.json").read_text(encoding="utf-8"))["gold"])
        with open(directory / "results.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise InputError(f"{directory}: results.csv needs lab.yaml and reference_gold.json beside it "
                         f"({type(exc).__name__}: {exc})") from None
    runs: dict = {}
    for row in rows:
        key = (row["regime"], row["method"], float(row["beta"]), int(row["seed"]))
        run = runs.setdefault(key, {"regime": key[0], "method": key[1], "beta": key[2], "seed": key[3],
                                    "status": row["status"], "evals": []})
        run["evals"].append({k: _number(row[k]) for k in ("gold", "kl_k3", "sqrt_kl", "length", "ess_min")}
                            | {"step": int(row["step"])})
    methods = [{"label": m["label"], "overrides": {k: v for k, v in m.items() if k != "label"}}
               for m in config.get("methods") or []]
    return {"config": config, "methods": methods, "reference_gold": {"gold": ref_gold}, "runs": list(runs.values())}
