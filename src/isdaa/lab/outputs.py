"""The lab's files: `results.csv` (one row per run × evaluation), the plots and `report.md`, all computed from
the recorded runs (`isdaa.lab.summary` for the numbers, `isdaa.lab.verdict` for the generated text);
`rebuild` regenerates them from a saved `results.json`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from isdaa.eval.plots import ci_bounds, gold_axis_label, plot_frontier, plot_over_steps
from isdaa.eval.stats import t_quantile
from isdaa.lab.regimes import regime_steps
from isdaa.lab.summary import group_runs, mean_curve, summarize
from isdaa.lab.verdict import constrained_table, dpo_label, fmt, frontier_table, results_table, verdict
from isdaa.lab.worlds import gold_name, report_for

__all__ = ["CSV_COLUMNS", "write_csv", "write_plots", "write_report", "write_outputs", "rebuild"]

CSV_COLUMNS = ["regime", "method", "beta", "seed", "step", "gold", "gold_se", "kl_k1", "kl_k1_se", "kl_k3",
               "kl_k3_se", "sqrt_kl", "length", "finished", "target_hits", "target_repeats", "off_vocab",
               "ess_min_so_far", "ess_min", "ess_mean", "w_mean", "w_min", "w_max", "clipped_frac", "raw_log_w_mean",
               "train_acc", "logps_chosen", "logps_rejected", "train_loss", "seconds", "status"]

# (eval key, y label, log scale, horizontal line at the reference's gold) of the over-steps plots; the gold axis
# names the world's gold reward (`gold_name`)
OVER_STEPS = (("gold", "gold reward", False, True), ("kl_k3", "KL (k3, nats)", True, False),
              ("ess_mean", "mean batch ESS (between evaluations)", False, False),
              ("ess_min", "min batch ESS (between evaluations)", False, False),
              ("length", "response length (words)", False, False))


def write_csv(results: dict, path: Path) -> Path:
    """`results.csv`: one row per run × evaluation (`CSV_COLUMNS`)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for run in results["runs"]:
            for ev in run["evals"]:
                w.writerow({**{k: run[k] for k in ("regime", "method", "beta", "seed", "status")}, **ev})
    return path


# ------------------------------------------------------------------------------------------ plots
def _frontier_plot(by_method: dict, path: Path, ref_gold: float, title: str, gold: str) -> Path | None:
    """Gold vs √KL of each method's seed-mean curve with its 95% t-CI; None when no curve has two points."""
    curves = {}
    for label, runs in by_method.items():
        steps, gm, gse = mean_curve(runs, "gold")
        _, km, _ = mean_curve(runs, "kl_k3")
        if len(gm) < 2:
            continue
        lo, hi = ci_bounds(gm, gse, z=t_quantile(len(runs)))
        curves[label] = (np.sqrt(np.maximum(km, 0)).tolist(), gm, lo, hi)
    if not curves:
        return None
    n_seeds = max(len(r) for r in by_method.values())
    return plot_frontier(curves, path, ref_gold=ref_gold, fit="rl", ylabel=gold,
                         title=f"{title}: mean of {n_seeds} seeds, 95% t-CI; dotted: Gao RL fit")


def _over_steps_plot(by_method: dict, key: str, path: Path, ylabel: str, **kwargs) -> Path | None:
    """`key` vs training step, seed mean with its 95% t-CI (KL: a log axis, no band); None without data."""
    series = {}
    for label, runs in by_method.items():
        steps, m, se = mean_curve(runs, key)
        if key == "kl_k3":
            m = [max(x, 1e-4) for x in m]
            se = [math.nan] * len(m)
        if m:
            lo, hi = ci_bounds(m, se, z=t_quantile(len(runs)))
            series[label] = (steps, m, lo, hi)
    return plot_over_steps(series, path, ylabel, **kwargs) if series else None


def write_plots(results: dict, summary: dict, out: Path) -> list[Path]:
    """`frontier_<regime>_beta<β>.png` and `over_steps_<key>_<regime>_beta<β>.png`; returns the paths written."""
    ref_gold = results["reference_gold"]["gold"]
    gold = gold_axis_label([gold_name(results["config"]["world"])])
    paths = []
    for regime, by_beta in group_runs(results).items():
        for beta, by_method in by_beta.items():
            tag = f"{regime}_beta{beta:g}"
            paths.append(_frontier_plot(by_method, out / f"frontier_{tag}.png", ref_gold, f"{regime}, beta={beta:g}",
                                        gold))
            for key, ylabel, logy, at_ref in OVER_STEPS:
                ylabel = gold if key == "gold" else ylabel
                paths.append(_over_steps_plot(by_method, key, out / f"over_steps_{key}_{tag}.png", ylabel, logy=logy,
                                              hline=ref_gold if at_ref else None,
                                              title=f"{ylabel}, {regime}, beta={beta:g}"))
    return [p for p in paths if p is not None]


# ------------------------------------------------------------------------------------------ report.md
def _protocol_section(results: dict) -> list[str]:
    lines = ["", "## Protocol", "",
             "| regime | pairs | steps | lr | batch | eval every |", "| --- | --- | --- | --- | --- | --- |"]
    for reg in results["regimes"]:
        lines.append(f"| {reg['name']} | {reg['n_pairs']} | {regime_steps(reg)} | {reg['lr']:g} | {reg['batch_size']} | "
                     f"{reg['eval_every']} |")
    note = results["config"].get("protocol_note")
    lines += ["", note] if note else []
    lines += ["", "AdamW, cosine schedule to 0.1·lr, gradient clip 1.0, all through `isdaa.train`. Evaluation: "
              f"{results['config']['eval_samples']} samples per held-out prompt at temperature 1 (no top-p), KL = k3 "
              "estimator (k1 in results.csv). Methods:", ""]
    for m in results["methods"]:
        lines.append(f"- **{m['label']}**: {', '.join(f'{k}={v}' for k, v in m['overrides'].items()) or 'defaults'}")
    return lines + [""]


def _block_section(results: dict, regime: str, beta: float, block: dict, main: bool) -> list[str]:
    """One regime and β: the tables, and for the report's β the verdict and DPO's policy."""
    ref_gold = results["reference_gold"]["gold"]
    lines = [f"## {'Results' if main else 'Also'}: {regime}, β = {beta:g}", ""]
    why = block.get("budget_rule", "")
    lines += [f"Seed means ± SE over seeds. KL in nats (k3). The frontier column interpolates every run's curve "
              f"(gold vs √KL, where it first reaches it; seeds that never do are left out and counted) at "
              f"√KL = {fmt(block['budget_sqrt_kl'])}, i.e. KL = "
              f"{fmt(block['budget_sqrt_kl'] ** 2, 1)} ({why}). \"best gold\" is an oracle early stop (the "
              f"checkpoint picked with the gold reward); \"gain given back\" = (peak − final)/(peak − start) of the "
              f"seed-mean curve; \"collapsed\" = final gold below the reference's {ref_gold:.3f}; ESS = "
              f"(Σw)²/(n·Σw²) per batch of n pairs (1/n = one pair carries the batch).", ""]
    lines += results_table(block) + [""]
    lines += ["Frontier: gold where the run's √KL first reaches each value (seed mean; n/a: no seed gets "
              "there; (k) = only k seeds do).", ""] + frontier_table(block) + [""]
    lines += ["KL-constrained frontier: the best gold among a run's evaluations with √KL ≤ x (seed mean ± SE; step 0, "
              "the reference, always qualifies, so a method that stays below a budget is not left out). Frontier "
              "score: its mean over the grid (the quantity docs/results/RULE.md ranks by).", ""]
    lines += constrained_table(block) + [""]
    if not main:
        return lines
    lines += ["### Verdict (generated from the numbers above)", ""] + verdict(results, block) + [""]
    dpo = dpo_label(results["methods"])
    sections = report_for(results["config"]["world"])
    table = sections.policy_table(results, regime, beta, dpo) if dpo else []
    if table:
        lines += [f"### What {dpo}'s policy looks like (seed means)", ""] + table + ["", sections.policy_note(results), ""]
    every = sections.methods_table(results, regime, beta) if sections.methods_table else []
    if every:
        lines += ["### Every method at its gold peak and at the end (seed means)", ""] + every + [""]
    return lines


def _runs_line(results: dict) -> str:
    """How many runs, how long they took, and whether the report is interim (runs still missing)."""
    runs, workers = results["runs"], results["config"]["workers"]
    own = sum(r.get("seconds", 0.0) for r in runs) / 60
    wall = results.get("wall_seconds")
    line = (f"{len(runs)} runs; their own times sum to {own:.1f} min ({workers} worker process(es) in parallel)"
            + (f"; this invocation's wall time {wall / 60:.1f} min." if wall else "."))
    missing = results.get("missing_runs") or 0
    if missing:
        line += (f" **Interim report: {missing} runs of the sweep are not done yet** (the sweep resumes where it "
                 f"stopped); numbers with fewer seeds than configured are provisional.")
    return line


def write_report(results: dict, summary: dict, out: Path, plots: list[Path]) -> Path:
    """`report.md`: the world, the reference and data, the protocol, the results with their verdict, figures."""
    cfg = results["config"]
    report_beta = float(cfg["report_beta"])
    lines = ["# isdaa lab report", ""]
    lines += [_runs_line(results), ""]
    sections = report_for(cfg["world"])
    lines += ["## The world", "", results["world"], "", results.get("why") or sections.why(results), ""]
    lines += sections.reference(results) + _protocol_section(results) + sections.after_protocol(results)
    for regime, by_beta in summary.items():
        for beta in sorted(by_beta, key=lambda b: (b != report_beta, b)):
            lines += _block_section(results, regime, beta, by_beta[beta], beta == report_beta)
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Files", "", sections.files]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ all of them
def write_outputs(results: dict, out: Path) -> Path:
    """results.csv, plots, report.md; adds `summary` to `results`. Returns the report's path."""
    out = Path(out)
    write_csv(results, out / "results.csv")
    summary = summarize(results)
    plots = write_plots(results, summary, out)
    results["summary"] = {
        regime: {str(beta): {"budget_sqrt_kl": b["budget_sqrt_kl"], "budget_rule": b.get("budget_rule"),
                             "methods": {k: {kk: vv for kk, vv in v.items()} for k, v in b["methods"].items()}}
                 for beta, b in by_beta.items()}
        for regime, by_beta in summary.items()
    }
    return write_report(results, summary, out, plots)


def rebuild(out_dir) -> Path:
    """Regenerate results.csv, the plots and report.md from `<out_dir>/results.json` (e.g. after editing
    the report code, or to re-judge at another `common_sqrt_kl`)."""
    out = Path(out_dir)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results.pop("summary", None)
    for run in results["runs"]:  # JSON turned the float keys into floats already; keep beta a float
        run["beta"] = float(run["beta"])
    return write_outputs(results, out)
