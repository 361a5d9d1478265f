"""A finished (or interim) lab sweep's results: the records of its runs with everything the report is written
from, and the files written from them (`isdaa.lab.outputs`, then `results.json`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from isdaa.config import LabConfig
from isdaa.lab import store
from isdaa.lab.outputs import write_outputs
from isdaa.lab.protocol import LabWorld, Prepared
from isdaa.lab.regimes import resolve_methods, resolve_regimes

__all__ = ["assemble", "write_results"]


def assemble(config: LabConfig, world: LabWorld, prep: Prepared, records: list[dict], n_runs: int) -> dict:
    """The results dict of a sweep of `n_runs` runs of which `records` are done."""
    records = sorted(records, key=lambda r: (r["regime"], r["method"], r["beta"], r["seed"]))
    return {
        "config": {**dataclasses.asdict(config), "world": world.settings()},
        "world": world.describe(),
        "why": world.why(),
        "reference": prep.reference,
        "behavior": prep.behavior,
        "reference_gold": prep.ref_gold,
        "pairs": {str(k): v["stats"] for k, v in prep.pairs.items()},
        "methods": resolve_methods(config.methods),
        "regimes": resolve_regimes(config.regimes),
        "runs": records,
        "missing_runs": n_runs - len(records),
        "wall_seconds": None,
    }


def write_results(results: dict, out: Path, t_start: float) -> Path:
    """results.csv, the plots, report.md and results.json (with the wall time since `t_start`); the report's path."""
    results["wall_seconds"] = time.time() - t_start
    report = write_outputs(results, out)
    results["wall_seconds"] = time.time() - t_start
    store.write_json(results, out / "results.json")
    return report
