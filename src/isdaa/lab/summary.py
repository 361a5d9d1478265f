"""The lab's numbers: per-run summaries, seed-mean curves and the per regime → β → method summary the report
is written from.

Per run (one method, β, seed, regime):
- best checkpoint: the evaluation with the highest gold reward (an oracle early stop: it uses the gold
  reward, which a practitioner does not have), its gold and KL;
- gold at a common KL budget d* (in √KL): the gold reward where the run's √KL curve first reaches d*, linearly
  interpolated between evaluations; missing when the run never reaches d*. d* = `common_sqrt_kl` when set,
  else the median over methods of the seed-mean final √KL (fixed rule); the same is tabulated on a grid;
- final gold and final KL (k3), collapse = final gold below the reference policy's gold reward;
- min ESS: the smallest per-batch effective sample size (Σw)²/(n·Σw²) logged during training (1 = uniform);
- lost share: (best − final) / (best − gold at step 0), the share of the gain given back by the end;
- KL-constrained best gold at x: the highest gold among the run's evaluations with √KL ≤ x (on the grid; step 0
  always qualifies), and the frontier score: its seed mean averaged over the grid (docs/results/RULE.md).
Seeds are summarised by their mean ± standard error (SE = sd/√n, `isdaa.eval.stats.finite_mean_se`).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from isdaa.eval.curves import fit_rl
from isdaa.eval.stats import finite_mean_se

__all__ = ["SQRT_KL_GRID", "group_runs", "first_crossing", "best_within", "frontier_score", "run_summary", "mean_curve",
           "summarize"]

SQRT_KL_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # √KL values of the report's frontier table
SEED_KEYS = ("best_gold", "best_kl", "final_gold", "final_kl", "min_ess", "lost_share", "gold0", "final_length")


def group_runs(results: dict) -> dict:
    """regime → β → method label → its runs (one per seed), in the order of `results["runs"]`."""
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in results["runs"]:
        groups[run["regime"]][run["beta"]][run["method"]].append(run)
    return groups


def first_crossing(d: np.ndarray, g: np.ndarray, target: float) -> float:
    """Gold where √KL first reaches `target` (linear interpolation), NaN if never reached."""
    if len(d) == 0:
        return math.nan
    if d[0] >= target:
        return float(g[0])
    for i in range(1, len(d)):
        if d[i] >= target:
            t = (target - d[i - 1]) / (d[i] - d[i - 1]) if d[i] > d[i - 1] else 1.0
            return float(g[i - 1] + t * (g[i] - g[i - 1]))
    return math.nan


def _gao_rl(d, g, r0: float) -> dict | None:
    """Gao et al.'s RL form fitted to a gold-vs-√KL curve, or None for a degenerate curve (no fit)."""
    try:
        return fit_rl(d, g, r0=r0)
    except Exception:  # noqa: BLE001 - a degenerate curve (e.g. one distinct point) has no fit
        return None


def run_summary(run: dict, ref_gold: float) -> dict:
    """One run's numbers (see the module docstring); `{"ok": False}` for a run without evaluations."""
    ev = run["evals"]
    if not ev:
        return {"ok": False}
    g = np.array([e["gold"] for e in ev], dtype=float)
    k = np.array([e["kl_k3"] for e in ev], dtype=float)
    ib = int(np.argmax(g))
    ess = [e["ess_min"] for e in ev if e.get("ess_min") is not None]
    gain = g[ib] - g[0]
    d = np.sqrt(np.maximum(k, 0))
    return {
        "ok": run["status"] == "ok",
        "gold0": float(g[0]),
        "best_gold": float(g[ib]), "best_kl": float(k[ib]), "best_step": int(ev[ib]["step"]),
        "final_gold": float(g[-1]), "final_kl": float(k[-1]), "final_step": int(ev[-1]["step"]),
        "max_sqrt_kl": float(d.max()),
        "collapsed": bool(g[-1] < ref_gold),
        "min_ess": float(min(ess)) if ess else math.nan,
        "lost_share": float((g[ib] - g[-1]) / gain) if gain > 0 else math.nan,
        "final_length": float(ev[-1]["length"]),
        "gao_rl": _gao_rl(d, g, float(g[0])) if np.sum(d > 0) >= 2 else None,
    }


def best_within(d: np.ndarray, g: np.ndarray, budget: float) -> float:
    """The KL-constrained best gold: the highest gold among evaluations with √KL ≤ `budget` (NaN: none)."""
    inside = g[d <= budget]
    return float(inside.max()) if inside.size else math.nan


def frontier_score(row: dict) -> float:
    """The mean over `SQRT_KL_GRID` of a method's seed-mean KL-constrained best gold (docs/results/RULE.md)."""
    values = [row["constrained_grid"][str(x)][0] for x in SQRT_KL_GRID]
    return float(np.mean(values)) if all(np.isfinite(values)) else math.nan


def mean_curve(runs: list[dict], key: str) -> tuple[list, list, list]:
    """(steps, mean over seeds, SE over seeds) of eval `key` at every step some seed evaluated."""
    by_step = defaultdict(list)
    for r in runs:
        for e in r["evals"]:
            v = e.get(key)
            if v is not None and np.isfinite(v):
                by_step[e["step"]].append(float(v))
    steps = sorted(by_step)
    means, ses = [], []
    for s in steps:
        m, se, _ = finite_mean_se(by_step[s])
        means.append(m)
        ses.append(se)
    return steps, means, ses


def _budget(config: dict, per_method: dict) -> tuple[float, str]:
    """The common KL budget d* (√KL) and the rule that chose it: configured, else the median over methods of
    the seed-mean final √KL (a rule fixed before the sweep: half the methods end beyond it, half below)."""
    budget = float(config.get("common_sqrt_kl") or 0.0)
    if budget <= 0:
        finals = [finite_mean_se([math.sqrt(max(s["final_kl"], 0.0)) for s in v["seeds"]])[0]
                  for v in per_method.values() if v["seeds"]]
        finals = [x for x in finals if np.isfinite(x) and x > 0]
        return (float(np.median(finals)) if finals else math.nan), "the median over methods of the seed-mean final √KL"
    return budget, "configured"


def _curve_profile(runs: list[dict]) -> dict:
    """The seed-mean curve's over-optimization profile (`curve`) and its Gao RL fit (`gao_rl`); {} without
    evaluations."""
    steps, gm, _ = mean_curve(runs, "gold")
    _, km, _ = mean_curve(runs, "kl_k3")
    if not gm:
        return {}
    ip = int(np.argmax(gm))
    gain = gm[ip] - gm[0]
    curve = {
        "peak_gold": gm[ip], "peak_step": steps[ip], "peak_kl": km[ip], "gold0": gm[0],
        "final_gold": gm[-1], "final_kl": km[-1], "gain": gain,
        "lost_share": (gm[ip] - gm[-1]) / gain if gain > 0 else math.nan,
        "kl_grows_after_peak": bool(km[-1] > km[ip]),
    }
    return {"curve": curve, "gao_rl": _gao_rl(np.sqrt(np.maximum(km, 0)), gm, gm[0])}


def _method_row(seeds: list[dict], runs: list[dict], budget: float) -> dict:
    """One method's row of the summary: seed means ± SE, the frontier at the budget and on the grid."""
    row = {key: finite_mean_se([s[key] for s in seeds]) for key in SEED_KEYS}
    curves = [(np.sqrt(np.maximum([e["kl_k3"] for e in r["evals"]], 0)), np.array([e["gold"] for e in r["evals"]]))
              for r in runs if r["evals"]]
    row["gold_at_budget"] = finite_mean_se([first_crossing(d, g, budget) for d, g in curves])
    row["frontier_grid"] = {str(x): finite_mean_se([first_crossing(d, g, x) for d, g in curves]) for x in SQRT_KL_GRID}
    row["constrained_grid"] = {str(x): finite_mean_se([best_within(d, g, x) for d, g in curves]) for x in SQRT_KL_GRID}
    row["frontier_score"] = frontier_score(row)
    row["collapsed"] = sum(s["collapsed"] for s in seeds)
    row["n_seeds"] = len(seeds)
    any_ess = seeds and any(np.isfinite(s["min_ess"]) for s in seeds)
    row["min_ess_overall"] = float(np.nanmin([s["min_ess"] for s in seeds])) if any_ess else math.nan
    row["failed"] = sum(not s["ok"] for s in seeds)
    row["seeds"] = seeds  # per-seed numbers, incl. each run's Gao RL fit
    row.update(_curve_profile(runs))
    return row


def summarize(results: dict) -> dict:
    """Per regime → β → method: seed-level summaries, their means, the common KL budget, the DPO check."""
    ref_gold = results["reference_gold"]["gold"]
    order = [m["label"] for m in results["methods"]]
    out: dict = {}
    for regime, by_beta in group_runs(results).items():
        out[regime] = {}
        for beta, by_method in by_beta.items():
            per = {}
            for label in order:
                runs = by_method.get(label, [])
                if not runs:
                    continue
                seeds = [dict(seed=r["seed"], **run_summary(r, ref_gold)) for r in runs]
                per[label] = {"seeds": [s for s in seeds if "best_gold" in s], "runs": runs}
            budget, rule = _budget(results["config"], per)
            table = {label: _method_row(v["seeds"], v["runs"], budget) for label, v in per.items()}
            out[regime][beta] = {"budget_sqrt_kl": budget, "budget_rule": rule, "methods": table}
    return out
