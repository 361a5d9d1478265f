"""The second selection rule (docs/results/RULE-objectives.md): it chooses among objectives — loss × weighting —
over the six controlled cells and the real-model cell, so that an objective without a weighting can win.

`isdaa lab compare --rule objectives DIR ... --out OUT` reads every lab directory's `results.json`; the runs of
one (world, β) may come from several directories (a world's first sweep and a later one adding a candidate: their
reference's gold must agree, i.e. the same preparation); a committed report without `results.json` is read from its
`results.csv` (`isdaa.lab.saved_results`). Controlled worlds are read in their `few_pairs` regime,
the model world in its one regime. A candidate is recognised by its objective (`loss`, `weighting`), whatever its
label. Writes OUT/summary.md and OUT/summary.json.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from isdaa.errors import InputError
from isdaa.lab.crossworld import _ranks, bar_check, metric_table
from isdaa.lab.saved_results import read_results
from isdaa.lab.store import write_json
from isdaa.lab.summary import summarize
from isdaa.lab.verdict import fmt, fmt_mean_se

__all__ = ["CANDIDATES", "load_objective_cells", "apply_objective_rule", "write_objective_comparison"]

# (loss, weighting) -> the rule's name for the candidate (RULE-objectives.md's table)
CANDIDATES = {
    ("sigmoid", "none"): "DPO", ("ipo", "none"): "IPO", ("chipo", "none"): "χPO",
    ("sigmoid", "is"): "IS-DPO eps=1", ("ipo", "is"): "IS-IPO eps=1",
    ("sigmoid", "is_two_sided"): "DPO two-sided", ("ipo", "is_ess"): "IS-IPO ess", ("chipo", "is"): "χPO + IS eps=1",
}
CONTROLLED_REGIME = "few_pairs"
MODEL_SEEDS = 3


def _candidate(overrides: dict) -> str | None:
    """The rule's name of a method's objective, or None when it is not a candidate (e.g. RPO's SFT term, ε ≠ 1)."""
    extra = set(overrides) - {"loss", "weighting", "is_eps"}
    if extra or float(overrides.get("is_eps", 1.0)) != 1.0:
        return None
    return CANDIDATES.get((overrides.get("loss", "sigmoid"), overrides.get("weighting", "none")))


def load_objective_cells(directories) -> dict:
    """{(world kind, β): {"methods": {candidate name: summary row}, "reference_gold": float, "model": bool}}."""
    cells: dict = {}
    for directory in directories:
        results = read_results(directory)
        world = results["config"]["world"].get("kind", "topics")
        model = world == "model"
        names = {m["label"]: _candidate(m["overrides"]) for m in results["methods"]}
        summary = summarize(results)
        regime = next(iter(summary)) if model and len(summary) == 1 else CONTROLLED_REGIME
        ref_gold = float(results["reference_gold"]["gold"])
        for beta, block in summary.get(regime, {}).items():
            cell = cells.setdefault((world, float(beta)), {"methods": {}, "reference_gold": ref_gold, "model": model})
            if not math.isclose(cell["reference_gold"], ref_gold, rel_tol=1e-6, abs_tol=1e-9):
                raise InputError(f"{directory}: its reference gold {ref_gold:.6g} differs from another directory's "
                                 f"{cell['reference_gold']:.6g} for {world} beta={beta:g}: not the same preparation")
            cell["methods"].update({names[label]: row for label, row in block["methods"].items() if names[label]})
    if not cells:
        raise InputError(f"no results in {', '.join(map(str, directories))}")
    return cells


def apply_objective_rule(cells: dict) -> dict:
    """RULE-objectives.md step by step; `applied` False (and no recommendation) while the real-model cell lacks a
    candidate's three seeds or a candidate is missing from a cell."""
    controlled = {k: c for k, c in cells.items() if not c["model"]}
    models = {k: c for k, c in cells.items() if c["model"]}
    names = list(CANDIDATES.values())
    missing = [f"{n} in {w} β={b:g}" for (w, b), c in sorted(cells.items()) for n in names if n not in c["methods"]]
    missing += [f"{n}: {c['methods'][n]['n_seeds']} of {MODEL_SEEDS} seeds in the model world"
                for c in models.values() for n in names
                if n in c["methods"] and c["methods"][n]["n_seeds"] < MODEL_SEEDS]
    if len(models) != 1:
        missing.append(f"{len(models)} real-model cells (the rule needs exactly one)")
    out = {"applied": False, "missing": missing, "recommended": None}
    if missing:
        return out
    collapses = {n: sum(c["methods"][n]["collapsed"] for c in cells.values()) for n in names}
    fewest = min(collapses.values())
    eligible = [n for n in names if collapses[n] == 0] or [n for n in names if collapses[n] == fewest]
    ranks = {f"{w} beta={b:g}": _ranks({n: c["methods"][n]["frontier_score"] for n in eligible})
             for (w, b), c in sorted(cells.items())}
    model_key = next(f"{w} beta={b:g}" for (w, b) in models)
    controlled_keys = [f"{w} beta={b:g}" for (w, b) in sorted(controlled)]
    score = {n: 0.5 * float(np.mean([ranks[k][n] for k in controlled_keys])) + 0.5 * ranks[model_key][n]
             for n in eligible}
    model_final = {n: next(iter(models.values()))["methods"][n]["final_gold"][0] for n in eligible}
    best = min(eligible, key=lambda n: (score[n], -model_final[n]))
    return {**out, "applied": True, "collapses": collapses, "eligible": eligible, "ranks": ranks, "score": score,
            "model_final_gold": model_final, "recommended": best}


def _rule_lines(rule: dict) -> list[str]:
    if not rule["applied"]:
        return ["## The rule is not applied yet", "", "Missing: " + "; ".join(rule["missing"]) + ".", ""]
    lines = ["## The rule applied (docs/results/RULE-objectives.md, unchanged)", "",
             "1. Collapsed seeds over all cells: " + ", ".join(f"{n} {k}" for n, k in rule["collapses"].items())
             + f". Eligible: {', '.join(rule['eligible'])}.", "2. Ranks by frontier score per cell:"]
    for cell, ranks in rule["ranks"].items():
        lines.append(f"   - {cell}: " + ", ".join(f"{n} {r:g}" for n, r in sorted(ranks.items(), key=lambda t: t[1])))
    lines.append("3. Score (½ mean controlled rank + ½ real-model rank): "
                 + ", ".join(f"{n} {s:.2f}" for n, s in sorted(rule["score"].items(), key=lambda t: t[1])) + ".")
    return lines + ["", f"**Recommended: {rule['recommended']}.**", ""]


def write_objective_comparison(directories, out, note: str = "") -> Path:
    """OUT/summary.md and OUT/summary.json: the candidates' tables over every cell and the rule."""
    cells = load_objective_cells(directories)
    rule = apply_objective_rule(cells)
    lines = ["# The objectives compared across worlds (the second rule)", "",
             "Cells: " + ", ".join(f"{w} β={b:g}" for w, b in sorted(cells)) + "; seed means ± SE (collapsed seeds).",
             ""] + ([note, ""] if note else [])
    names = list(CANDIDATES.values())

    def table(title, value):
        return metric_table(cells, names, title, value, header="objective")

    lines += table("Frontier score (mean over √KL ≤ 0.5 … 6 of the KL-constrained best gold)",
                   lambda r: fmt(r["frontier_score"]))
    lines += table("Final gold (collapsed seeds / seeds)",
                   lambda r: f"{fmt_mean_se(r['final_gold'])} ({r['collapsed']}/{r['n_seeds']})")
    lines += table("Best-checkpoint gold", lambda r: fmt_mean_se(r["best_gold"]))
    lines += _rule_lines(rule)
    if rule["applied"]:
        checks = {f"{w} β={b:g}": bar_check({(w, b): {**c, "dpo": "DPO"}}, rule["recommended"])
                  for (w, b), c in sorted(cells.items())}
        lines += ["The team's bar for the pick, per cell (criteria met of 4): "
                  + ", ".join(f"{k} {sum(next(iter(v.values())).values())}/4" for k, v in checks.items()), ""]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json({"rule": rule, "cells": {f"{w} beta={b:g}": {n: {k: r[k] for k in ("frontier_score", "final_gold",
                                                                                   "best_gold", "collapsed", "n_seeds")}
                                                            for n, r in c["methods"].items()}
                                        for (w, b), c in cells.items()}}, out / "summary.json")
    return path
