"""The cross-world study: several lab directories (one world each) → one table per (world, β) cell, the
pre-registered selection rule of docs/results/RULE.md applied unchanged, and the team's bar checked.

`isdaa lab compare DIR [DIR ...] --out OUT` writes OUT/summary.md and OUT/summary.json. With `--supplementary`
(runs outside the rule's design, e.g. β = 0.1 or the one-pass regime, `--regime one_pass`) it writes the same
tables and compares `isdaa.objectives.RECOMMENDED`'s run with DPO, IPO and χPO, but applies no rule.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from isdaa.config import ObjectiveConfig
from isdaa.errors import InputError
from isdaa.objectives import RECOMMENDED
from isdaa.lab.saved_results import read_results
from isdaa.lab.store import write_json
from isdaa.lab.summary import SQRT_KL_GRID, summarize
from isdaa.lab.verdict import dpo_label, fmt, fmt_mean_se

__all__ = ["CANDIDATE_WEIGHTINGS", "Study", "load_cells", "apply_rule", "bar_check", "write_comparison"]

# The weightings the rule chooses among (docs/results/RULE.md); methods with weighting "none" are comparators.
CANDIDATE_WEIGHTINGS = ("is", "is_two_sided", "is_ess", "is_ess_norm", "is_curv")
REGIME = "few_pairs"
COMPARATORS = ("DPO", "IPO", "chiPO")


@dataclasses.dataclass
class Study:
    """The compared sweeps: cells {(world, β): {"methods": {label: summary row}, ...}}, each method's objective
    overrides, and how many runs of the sweeps are not done yet (interim reports)."""

    cells: dict
    methods: dict
    missing_runs: int = 0


def load_cells(directories, regime: str = REGIME) -> Study:
    """The regime `regime` (default: few pairs) of every lab directory, by (world, β); the world is its config's
    `world.kind`."""
    cells, methods, missing = {}, {}, 0
    for directory in directories:
        results = read_results(directory)
        world = results["config"]["world"].get("kind", "topics")
        missing += int(results.get("missing_runs") or 0)
        methods.update({m["label"]: m["overrides"] for m in results["methods"]})
        for beta, block in summarize(results).get(regime, {}).items():
            cells[(world, float(beta))] = {"methods": block["methods"], "budget": block["budget_sqrt_kl"],
                                           "reference_gold": results["reference_gold"]["gold"],
                                           "dpo": dpo_label(results["methods"])}
    if not cells:
        raise InputError(f"no {regime} results in {', '.join(map(str, directories))}")
    return Study(cells, methods, missing)


def _candidates(cells: dict, methods: dict) -> list[str]:
    """The candidate labels present in every cell."""
    labels = [m for m, o in methods.items() if o.get("weighting", "none") in CANDIDATE_WEIGHTINGS]
    return [m for m in labels if all(m in c["methods"] for c in cells.values())]


def _ranks(scores: dict) -> dict:
    """1 = the highest score; equal scores share the mean of their ranks; a NaN score ranks last."""
    order = sorted(scores, key=lambda m: -scores[m] if np.isfinite(scores[m]) else np.inf)
    ranks, i = {}, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for m in order[i:j + 1]:
            ranks[m] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def apply_rule(cells: dict, methods: dict) -> dict:
    """docs/results/RULE.md, step by step: disqualify collapses, rank by frontier score per cell, lowest mean rank
    wins, ties to the higher mean final gold. Returns every intermediate number and the recommended label."""
    candidates = _candidates(cells, methods)
    if not candidates:
        raise InputError("no candidate weighting was run in every world and beta")
    collapses = {m: sum(c["methods"][m]["collapsed"] for c in cells.values()) for m in candidates}
    fewest = min(collapses.values())
    eligible = [m for m in candidates if collapses[m] == 0] or [m for m in candidates if collapses[m] == fewest]
    ranks = {f"{w} beta={b:g}": _ranks({m: c["methods"][m]["frontier_score"] for m in eligible})
             for (w, b), c in sorted(cells.items())}
    mean_rank = {m: float(np.mean([r[m] for r in ranks.values()])) for m in eligible}
    mean_final = {m: float(np.mean([c["methods"][m]["final_gold"][0] for c in cells.values()])) for m in eligible}
    best = min(eligible, key=lambda m: (mean_rank[m], -mean_final[m]))
    return {"candidates": candidates, "collapses": collapses, "eligible": eligible, "ranks": ranks,
            "mean_rank": mean_rank, "mean_final_gold": mean_final, "recommended": best,
            "overrides": methods[best]}


def bar_check(cells: dict, label: str) -> dict:
    """The team's bar for `label` in each cell: constrained best gold ≥ DPO's at every grid point, best gold ≥
    DPO's best − 1 SE, final gold within 5% of its own best, zero collapses."""
    out = {}
    for (world, beta), c in sorted(cells.items()):
        row, dpo = c["methods"][label], c["methods"].get(c["dpo"])
        if dpo is None:
            continue
        grid = all(row["constrained_grid"][str(x)][0] >= dpo["constrained_grid"][str(x)][0] for x in SQRT_KL_GRID)
        best_ok = row["best_gold"][0] >= dpo["best_gold"][0] - (dpo["best_gold"][1] if np.isfinite(dpo["best_gold"][1]) else 0)
        final_ok = row["final_gold"][0] >= row["best_gold"][0] - 0.05 * abs(row["best_gold"][0])
        out[f"{world} beta={beta:g}"] = {"frontier >= DPO": grid, "best >= DPO best - 1 SE": bool(best_ok),
                                         "final within 5% of best": bool(final_ok), "no collapse": row["collapsed"] == 0}
    return out


# ------------------------------------------------------------------------------------------ the report
def _cell_names(cells: dict) -> list:
    return sorted(cells)


def metric_table(cells: dict, labels: list[str], title: str, value, header: str = "method") -> list[str]:
    """A markdown table of `value(summary row)` for each label (rows) and cell (columns); "—" where absent."""
    names = _cell_names(cells)
    lines = [f"**{title}**", "", f"| {header} | " + " | ".join(f"{w} β={b:g}" for w, b in names) + " |",
             "| --- " * (len(names) + 1) + "|"]
    for m in labels:
        row = [value(cells[n]["methods"][m]) if m in cells[n]["methods"] else "—" for n in names]
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines + [""]


def _rule_lines(rule: dict) -> list[str]:
    lines = ["## The rule applied (docs/results/RULE.md, unchanged)", ""]
    lines.append("1. Collapsed seeds over all cells: " + ", ".join(f"{m} {n}" for m, n in rule["collapses"].items())
                 + f". Eligible: {', '.join(rule['eligible'])}.")
    lines.append("2. Ranks by frontier score per cell:")
    for cell, ranks in rule["ranks"].items():
        lines.append(f"   - {cell}: " + ", ".join(f"{m} {r:g}" for m, r in sorted(ranks.items(), key=lambda t: t[1])))
    lines.append("3. Mean rank: " + ", ".join(f"{m} {r:.2f}" for m, r in sorted(rule["mean_rank"].items(),
                                                                              key=lambda t: t[1])) + ".")
    lines += ["", f"**Recommended: {rule['recommended']}** ({rule['overrides']}).", ""]
    return lines


def _versus_lines(cells: dict, label: str) -> list[str]:
    """The recommendation against DPO, IPO and χPO (those of them it is not) in each cell, by frontier score and by
    final gold."""
    lines = [f"## The recommendation ({label}) against DPO, IPO and χPO", ""]
    for (world, beta) in _cell_names(cells):
        table = cells[(world, beta)]["methods"]
        r = table[label]
        parts = []
        for other in COMPARATORS:
            if other in table and other != label:
                o = table[other]
                parts.append(f"{other}: frontier {fmt(r['frontier_score'])} vs {fmt(o['frontier_score'])}, final gold "
                             f"{fmt_mean_se(r['final_gold'])} vs {fmt_mean_se(o['final_gold'])}, collapses "
                             f"{r['collapsed']} vs {o['collapsed']}/{o['n_seeds']}")
        lines.append(f"- {world} β={beta:g}: " + "; ".join(parts) + ".")
    return lines + [""]


def _bar_lines(cells: dict, labels: list[str]) -> list[str]:
    lines = ["## The team's bar (per cell: criteria met of 4)", "",
             "Criteria: KL-constrained best gold ≥ DPO's at every √KL of the grid; best-checkpoint gold ≥ DPO's best "
             "− 1 SE; final gold within 5% of its own best; no collapsed seed.", ""]
    names = [f"{w} beta={b:g}" for w, b in _cell_names(cells)]
    lines += ["| candidate | " + " | ".join(names) + " | meets the bar everywhere |", "| --- " * (len(names) + 2) + "|"]
    for m in labels:
        checks = bar_check(cells, m)
        row = [f"{sum(checks[n].values())}/4" for n in names]
        everywhere = all(all(checks[n].values()) for n in names)
        lines.append(f"| {m} | " + " | ".join(row) + f" | {'yes' if everywhere else 'no'} |")
    return lines + [""]


def recommended_label(methods: dict) -> str | None:
    """The label of the method whose objective is `RECOMMENDED`'s (keys it leaves out at their ObjectiveConfig
    defaults; no other key set); None when no method is."""
    defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(ObjectiveConfig)}
    for label, overrides in methods.items():
        if set(overrides) <= set(RECOMMENDED) and all(overrides.get(k, defaults.get(k)) == v
                                                      for k, v in RECOMMENDED.items()):
            return label
    return None


def _supplementary_lines(cells: dict, methods: dict) -> list[str]:
    label = recommended_label(methods)
    lines = ["## No rule here", "", "These runs are outside the design of docs/results/RULE.md (the few-pairs regime at "
             "β ∈ {0.01, 0.05}); they show how the recommendation (`isdaa.objectives.RECOMMENDED`) behaves elsewhere.", ""]
    if label is None or not all(label in c["methods"] for c in cells.values()):
        return lines + ["The recommendation (`isdaa.objectives.RECOMMENDED`) was not run in every cell.", ""]
    return lines + _versus_lines(cells, label) + _bar_lines(cells, [label])


def write_comparison(directories, out, note: str = "", *, regime: str = REGIME, supplementary: bool = False) -> Path:
    """OUT/summary.md and OUT/summary.json for the lab directories `directories` (one world each) in `regime`;
    `note`: a paragraph for the top of summary.md (e.g. which world of the design is still missing);
    `supplementary`: no rule, only the tables and the recommendation against DPO, IPO and χPO."""
    study = load_cells(directories, regime)
    cells, methods, missing = study.cells, study.methods, study.missing_runs
    rule = None if supplementary else apply_rule(cells, methods)
    labels = [m for m in methods if any(m in c["methods"] for c in cells.values())]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = "# Supplementary runs" if supplementary else "# The cross-world study"
    lines = [title, "",
             f"Worlds and β: {', '.join(f'{w} β={b:g}' for w, b in _cell_names(cells))}; the {regime} regime; seed "
             f"means ± SE. Each world's own report: its directory's report.md.", ""]
    if note:
        lines += [note, ""]
    if missing:
        lines += [f"**Provisional: {missing} runs of the design are not done yet.** The rule below is applied to the "
                  f"runs done so far only to show where it stands; it is not the recommendation until the design is "
                  f"complete.", ""]
    lines += ["## Cross-world summary", ""]
    lines += metric_table(cells, labels, "Frontier score (mean over √KL ≤ 0.5 … 6 of the KL-constrained best gold)",
                           lambda r: fmt(r["frontier_score"]))
    lines += metric_table(cells, labels, "Final gold (collapsed seeds)",
                           lambda r: f"{fmt_mean_se(r['final_gold'])} ({r['collapsed']}/{r['n_seeds']})")
    lines += metric_table(cells, labels, "Best-checkpoint gold", lambda r: fmt_mean_se(r["best_gold"]))
    lines += metric_table(cells, labels, "Final KL (nats)", lambda r: fmt_mean_se(r["final_kl"], 1))
    if supplementary:
        lines += _supplementary_lines(cells, methods)
    else:
        lines += _rule_lines(rule) + _versus_lines(cells, rule["recommended"]) + _bar_lines(cells, rule["candidates"])
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json({"rule": rule, "regime": regime, "missing_runs": missing,
                "cells": {f"{w} beta={b:g}": {m: {k: r[k] for k in ("frontier_score", "final_gold", "best_gold",
                                                                     "collapsed", "n_seeds")}
                                              for m, r in c["methods"].items()}
                          for (w, b), c in cells.items()}}, out / "summary.json")
    return path
