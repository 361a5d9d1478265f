"""The lab's outputs: summary statistics, `results.csv`, plots and `report.md`.

Everything in the report is computed from the recorded runs; the verdict sentences are generated from the
numbers (differences are called "higher"/"lower" only when they exceed twice their standard error over
seeds, otherwise "no clear difference").

Per run (one method, β, seed, regime):
- best checkpoint: the evaluation with the highest gold reward (an oracle early stop: it uses the gold
  reward, which a practitioner does not have), its gold and KL;
- gold at a common KL budget d* (in √KL): the gold reward where the run's √KL curve first reaches d*, linearly
  interpolated between evaluations; missing when the run never reaches d*. d* = `common_sqrt_kl` when set,
  else the median over methods of the seed-mean final √KL (fixed rule); the same is tabulated on a grid;
- final gold and final KL (k3), collapse = final gold below the reference policy's gold reward;
- min ESS: the smallest per-batch effective sample size (Σw)²/(n·Σw²) logged during training (1 = uniform);
- lost share: (best − final) / (best − gold at step 0), the share of the gain given back by the end.
Seeds are summarised by their mean ± standard error (SE = sd/√n).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------ per-run numbers
SQRT_KL_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # √KL values of the report's frontier table


def _interp_first_crossing(d: np.ndarray, g: np.ndarray, target: float) -> float:
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


def run_summary(run: dict, ref_gold: float) -> dict:
    ev = run["evals"]
    if not ev:
        return {"ok": False}
    g = np.array([e["gold"] for e in ev], dtype=float)
    k = np.array([e["kl_k3"] for e in ev], dtype=float)
    ib = int(np.argmax(g))
    ess = [e["ess_min"] for e in ev if e.get("ess_min") is not None]
    gain = g[ib] - g[0]
    out = {
        "ok": run["status"] == "ok",
        "gold0": float(g[0]),
        "best_gold": float(g[ib]), "best_kl": float(k[ib]), "best_step": int(ev[ib]["step"]),
        "final_gold": float(g[-1]), "final_kl": float(k[-1]), "final_step": int(ev[-1]["step"]),
        "max_sqrt_kl": float(np.sqrt(np.maximum(k, 0)).max()),
        "collapsed": bool(g[-1] < ref_gold),
        "min_ess": float(min(ess)) if ess else math.nan,
        "lost_share": float((g[ib] - g[-1]) / gain) if gain > 0 else math.nan,
        "final_length": float(ev[-1]["length"]),
    }
    try:
        from isdaa.eval import fit_rl

        d = np.sqrt(np.maximum(k, 0))
        out["gao_rl"] = fit_rl(d, g, r0=float(g[0])) if np.sum(d > 0) >= 2 else None
    except Exception:  # a degenerate curve (e.g. one distinct point) has no fit
        out["gao_rl"] = None
    return out


def _mean_se(values) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se, int(v.size)


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
        m, se, _ = _mean_se(by_step[s])
        means.append(m)
        ses.append(se)
    return steps, means, ses


def summarize(results: dict) -> dict:
    """Per regime → β → method: seed-level summaries, their means, the common KL budget, the DPO check."""
    ref_gold = results["reference_gold"]["gold"]
    cfg = results["config"]
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in results["runs"]:
        groups[run["regime"]][run["beta"]][run["method"]].append(run)
    order = [m["label"] for m in results["methods"]]
    out: dict = {}
    for regime, by_beta in groups.items():
        out[regime] = {}
        for beta, by_method in by_beta.items():
            per = {}
            for label in order:
                runs = by_method.get(label, [])
                if not runs:
                    continue
                seeds = [dict(seed=r["seed"], **run_summary(r, ref_gold)) for r in runs]
                seeds = [s for s in seeds if "best_gold" in s]
                per[label] = {"seeds": seeds, "runs": runs}
            # the common KL budget d* (√KL): configured, else the median over methods of the seed-mean final √KL
            # (a rule fixed before the sweep: half the methods end beyond it, half below)
            budget = float(cfg.get("common_sqrt_kl") or 0.0)
            rule = "configured"
            if budget <= 0:
                finals = [_mean_se([math.sqrt(max(s["final_kl"], 0.0)) for s in v["seeds"]])[0] for v in per.values()
                          if v["seeds"]]
                finals = [x for x in finals if np.isfinite(x) and x > 0]
                budget = float(np.median(finals)) if finals else math.nan
                rule = "the median over methods of the seed-mean final √KL"
            table = {}
            for label, v in per.items():
                ss = v["seeds"]
                row = {}
                for key in ("best_gold", "best_kl", "final_gold", "final_kl", "min_ess", "lost_share", "gold0",
                            "final_length"):
                    row[key] = _mean_se([s[key] for s in ss])
                curves = [(np.sqrt(np.maximum([e["kl_k3"] for e in r["evals"]], 0)),
                           np.array([e["gold"] for e in r["evals"]])) for r in v["runs"] if r["evals"]]
                row["gold_at_budget"] = _mean_se([_interp_first_crossing(d, g, budget) for d, g in curves])
                row["frontier_grid"] = {str(x): _mean_se([_interp_first_crossing(d, g, x) for d, g in curves])
                                        for x in SQRT_KL_GRID}
                row["collapsed"] = sum(s["collapsed"] for s in ss)
                row["n_seeds"] = len(ss)
                row["min_ess_overall"] = float(np.nanmin([s["min_ess"] for s in ss])) if ss and any(
                    np.isfinite(s["min_ess"]) for s in ss) else math.nan
                row["failed"] = sum(not s["ok"] for s in ss)
                row["seeds"] = ss  # per-seed numbers, incl. each run's Gao RL fit
                # the seed-mean curve and its over-optimization profile
                steps, gm, _ = mean_curve(v["runs"], "gold")
                _, km, _ = mean_curve(v["runs"], "kl_k3")
                if gm:
                    ip = int(np.argmax(gm))
                    gain = gm[ip] - gm[0]
                    row["curve"] = {
                        "peak_gold": gm[ip], "peak_step": steps[ip], "peak_kl": km[ip], "gold0": gm[0],
                        "final_gold": gm[-1], "final_kl": km[-1], "gain": gain,
                        "lost_share": (gm[ip] - gm[-1]) / gain if gain > 0 else math.nan,
                        "kl_grows_after_peak": bool(km[-1] > km[ip]),
                    }
                    try:
                        from isdaa.eval import fit_rl

                        row["gao_rl"] = fit_rl(np.sqrt(np.maximum(km, 0)), gm, r0=gm[0])
                    except Exception:
                        row["gao_rl"] = None
                table[label] = row
            out[regime][beta] = {"budget_sqrt_kl": budget, "budget_rule": rule, "methods": table}
    return out


# ------------------------------------------------------------------------------------------ plots
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13,
         20: 2.09, 30: 2.04}


def t_quantile(n: int) -> float:
    """97.5% quantile of Student's t with n − 1 degrees of freedom (the 95% CI of a mean of n seeds)."""
    df = max(int(n) - 1, 1)
    keys = [k for k in sorted(_T975) if k <= df]
    return _T975[keys[-1]] if df <= 30 else 1.96



def write_plots(results: dict, summary: dict, out: Path) -> list[Path]:
    from isdaa.eval import ci_bounds, plot_frontier, plot_over_steps

    ref_gold = results["reference_gold"]["gold"]
    paths = []
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in results["runs"]:
        groups[run["regime"]][run["beta"]][run["method"]].append(run)
    for regime, by_beta in groups.items():
        for beta, by_method in by_beta.items():
            tag = f"{regime}_beta{beta:g}"
            curves = {}
            for label, runs in by_method.items():
                steps, gm, gse = mean_curve(runs, "gold")
                _, km, _ = mean_curve(runs, "kl_k3")
                if len(gm) < 2:
                    continue
                lo, hi = ci_bounds(gm, gse, z=t_quantile(len(runs)))
                curves[label] = (np.sqrt(np.maximum(km, 0)).tolist(), gm, lo, hi)
            if curves:
                n_seeds = max(len(r) for r in by_method.values())
                paths.append(plot_frontier(
                    curves, out / f"frontier_{tag}.png", ref_gold=ref_gold, fit="rl",
                    title=f"{regime}, beta={beta:g}: mean of {n_seeds} seeds, 95% t-CI; dotted: Gao RL fit",
                ))
            for key, ylabel, logy, hline in (("gold", "gold reward", False, ref_gold), ("kl_k3", "KL (k3, nats)", True, None),
                                             ("ess_mean", "mean batch ESS (between evaluations)", False, None),
                                             ("ess_min", "min batch ESS (between evaluations)", False, None),
                                             ("length", "response length (words)", False, None)):
                series = {}
                for label, runs in by_method.items():
                    steps, m, se = mean_curve(runs, key)
                    if key == "kl_k3":
                        m = [max(x, 1e-4) for x in m]
                        se = [math.nan] * len(m)
                    if m:
                        lo, hi = ci_bounds(m, se, z=t_quantile(len(runs)))
                        series[label] = (steps, m, lo, hi)
                if series:
                    paths.append(plot_over_steps(series, out / f"over_steps_{key}_{tag}.png", ylabel, logy=logy,
                                                 hline=hline, title=f"{ylabel}, {regime}, beta={beta:g}"))
    return paths


# ------------------------------------------------------------------------------------------ report text


def _f(x, nd=2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _ms(t, nd=2) -> str:
    m, se, n = t
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.{nd}f}" if not np.isfinite(se) else f"{m:.{nd}f} ± {se:.{nd}f}"


def _cmp(a, b) -> str:
    """Compare two (mean, se, n) tuples: higher / lower / no clear difference (2 SE of the difference)."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return "not comparable"
    if na < 2 or nb < 2:
        return "not comparable (fewer than 2 seeds)"
    se = math.sqrt((sa if np.isfinite(sa) else 0) ** 2 + (sb if np.isfinite(sb) else 0) ** 2)
    diff = ma - mb
    if se == 0 or abs(diff) > 2 * se:
        return "higher" if diff > 0 else "lower"
    return "no clear difference"


def _base_of(label: str, methods: list[dict]) -> str | None:
    """The unweighted, unregularised method with the same loss (IS-DPO → DPO), if listed."""
    by = {m["label"]: m["overrides"] for m in methods}
    o = by[label]
    if o.get("weighting", "none") == "none":
        return None
    for other, oo in by.items():
        if (oo.get("loss", "sigmoid") == o.get("loss", "sigmoid") and oo.get("weighting", "none") == "none"
                and not oo.get("sft_eta") and not oo.get("hparams")):
            return other
    return None


def _dpo_label(methods: list[dict]) -> str | None:
    for m in methods:
        o = m["overrides"]
        if o.get("loss", "sigmoid") == "sigmoid" and o.get("weighting", "none") == "none" and not o.get("sft_eta") \
                and not o.get("hparams"):
            return m["label"]
    return None


def _mechanism(results: dict, regime: str, beta: float, label: str) -> list[str]:
    """What the over-optimizing policy looks like at its peak and at the end (seed means + examples)."""
    runs = [r for r in results["runs"] if r["regime"] == regime and r["beta"] == beta and r["method"] == label]
    if not runs or not runs[0]["evals"]:
        return []
    steps, gm, _ = mean_curve(runs, "gold")
    peak = steps[int(np.argmax(gm))]
    rows = []
    for name, step in (("reference (step 0)", steps[0]), (f"peak (step {peak})", peak), (f"end (step {steps[-1]})", steps[-1])):
        vals = {}
        for key in ("gold", "kl_k3", "length", "target_hits", "target_repeats", "off_vocab", "finished"):
            vals[key] = np.mean([e[key] for r in runs for e in r["evals"] if e["step"] == step])
        ex = next((e["examples"][:2] for e in runs[0]["evals"] if e["step"] == step), [])
        rows.append(f"| {name} | {_f(vals['gold'])} | {_f(vals['kl_k3'], 1)} | {_f(vals['length'], 1)} | "
                    f"{_f(vals['target_hits'])} | {_f(vals['target_repeats'])} | {100 * vals['off_vocab']:.0f}% | "
                    f"{100 * (1 - vals['finished']):.0f}% | {'; '.join(f'`{x}`' for x in ex)} |")
    head = ["| policy | gold | KL | length | distinct targets | extra target copies | off-support tokens | "
            "no EOS by 17 tokens | samples (seed 0) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    return head + rows


def _verdict(results: dict, regime: str, beta: float, block: dict) -> list[str]:
    methods = results["methods"]
    table = block["methods"]
    lines = []
    dpo = _dpo_label(methods)
    if dpo in table and "curve" in table[dpo]:
        c = table[dpo]["curve"]
        ok = c["gain"] > 0 and c["lost_share"] >= 0.15 and c["kl_grows_after_peak"]
        lost = f"{100 * c['lost_share']:.0f}%" if np.isfinite(c["lost_share"]) else "none"
        lines.append(
            f"- **{dpo} {'over-optimizes' if ok else 'does not over-optimize'} here** (seed-mean curve; criterion: "
            f"gives back ≥ 15% of its gain while KL keeps growing): gold {c['gold0']:.2f} → peak {c['peak_gold']:.2f} "
            f"at step {c['peak_step']} (KL {c['peak_kl']:.1f}) → {c['final_gold']:.2f} at the end "
            f"(KL {c['final_kl']:.1f}); gain given back: {lost}; KL after the peak "
            f"{'grows' if c['kl_grows_after_peak'] else 'does not grow'}."
        )
    labels = list(table)

    for key, name in (("gold_at_budget", f"the frontier (gold at √KL = {block['budget_sqrt_kl']:.2f})"),
                      ("best_gold", "the best checkpoint (oracle early stopping)"),
                      ("final_gold", "the final policy (the paper's framing)")):
        ranked = sorted((l for l in labels if np.isfinite(table[l][key][0])), key=lambda l: -table[l][key][0])
        if not ranked:
            continue
        top = ranked[0]
        tied = [l for l in ranked[1:] if _cmp(table[top][key], table[l][key]) in ("lower", "no clear difference")]
        if key == "gold_at_budget":
            missing = [l for l in labels if table[l][key][2] < table[l]["n_seeds"]]
            name += " among methods whose seeds reach it" + (
                f" ({', '.join(missing)} stop short of it in some or all seeds)" if missing else "")
        if len(ranked) == 1:
            tail = ""
        elif tied:
            tail = f"; within 2 SE of it: {', '.join(f'{l} ({table[l][key][0]:.2f})' for l in tied)}"
        else:
            tail = " (ahead of every other method by more than 2 SE)"
        lines.append(f"- Best by {name}: **{top}** ({_ms(table[top][key])}){tail}.")
    for l in labels:
        base = _base_of(l, methods)
        if base is None or base not in table:
            continue
        a, b = table[l], table[base]
        lines.append(
            f"- {l} vs {base}: final gold {_cmp(a['final_gold'], b['final_gold'])} "
            f"({_ms(a['final_gold'])} vs {_ms(b['final_gold'])}); gold at the KL budget "
            f"{_cmp(a['gold_at_budget'], b['gold_at_budget'])} ({_ms(a['gold_at_budget'])} vs {_ms(b['gold_at_budget'])}); "
            f"best checkpoint {_cmp(a['best_gold'], b['best_gold'])}; final KL {_ms(a['final_kl'], 1)} vs "
            f"{_ms(b['final_kl'], 1)}; collapsed seeds {a['collapsed']}/{a['n_seeds']} vs {b['collapsed']}/{b['n_seeds']}; "
            f"min ESS {_f(a['min_ess_overall'], 3)}."
        )
    wins_final = [l for l in labels if _base_of(l, methods) in table
                  and _cmp(table[l]["final_gold"], table[_base_of(l, methods)]["final_gold"]) == "higher"]
    for l in wins_final:
        b = _base_of(l, methods)
        grid = [(x, table[l]["frontier_grid"][str(x)], table[b]["frontier_grid"][str(x)]) for x in SQRT_KL_GRID]
        both = [(x, _cmp(a_, b_)) for x, a_, b_ in grid if a_[2] >= 2 and b_[2] >= 2]
        higher = [x for x, c in both if c == "higher"]
        lower = [x for x, c in both if c == "lower"]
        fk = (table[l]["final_kl"][0], table[b]["final_kl"][0])
        if not both:
            continue
        if higher and not lower:
            what = f"and also on the frontier (higher gold at √KL = {', '.join(f'{x:g}' for x in higher)})"
        elif lower and not higher:
            what = (f"but not on the frontier: at equal KL its gold is lower (√KL = {', '.join(f'{x:g}' for x in lower)})"
                    f" and nowhere higher — the weight buys its final gold by stopping at a smaller KL "
                    f"({fk[0]:.1f} vs {fk[1]:.1f} nats), not by more gold per nat")
        elif higher and lower:
            what = (f"with a mixed frontier (higher at √KL = {', '.join(f'{x:g}' for x in higher)}, lower at "
                    f"{', '.join(f'{x:g}' for x in lower)})")
        else:
            what = (f"but not on the frontier: at equal KL no clear difference over the range both reach (√KL ≤ "
                    f"{max(x for x, _ in both):g}); it ends at a smaller KL ({fk[0]:.1f} vs {fk[1]:.1f} nats)")
        lines.append(f"- By the final policy {l} beats {b} {what}.")
    return lines


def _table(block: dict, ref_gold: float) -> list[str]:
    head = ("| method | best gold | KL at best | gold @ √KL={b} | final gold | final KL | gain given back | "
            "collapsed | min ESS (mean) | min ESS (any seed) | Gao RL fit α, β |").format(b=_f(block["budget_sqrt_kl"]))
    lines = [head, "| --- " * 11 + "|"]
    for label, row in block["methods"].items():
        g = row.get("gao_rl")
        fit = f"{g['alpha']:.2f}, {g['beta']:.2f}" if g else "n/a"
        at = row["gold_at_budget"]
        at_s = _ms(at) + ("" if at[2] == row["n_seeds"] else f" ({at[2]}/{row['n_seeds']} seeds reach it)")
        failed = f" ({row['failed']} stopped)" if row["failed"] else ""
        lines.append(
            f"| {label}{failed} | {_ms(row['best_gold'])} | {_ms(row['best_kl'], 1)} | {at_s} | {_ms(row['final_gold'])} | "
            f"{_ms(row['final_kl'], 1)} | {_f(100 * row.get('curve', {}).get('lost_share', math.nan), 0)}% | "
            f"{row['collapsed']}/{row['n_seeds']} | {_ms(row['min_ess'], 3)} | {_f(row['min_ess_overall'], 3)} | {fit} |"
        )
    return lines


def _grid_table(block: dict) -> list[str]:
    lines = ["| method | " + " | ".join(f"√KL={x:g}" for x in SQRT_KL_GRID) + " |",
             "| --- " * (len(SQRT_KL_GRID) + 1) + "|"]
    for label, row in block["methods"].items():
        cells = []
        for x in SQRT_KL_GRID:
            m, _, k = row["frontier_grid"][str(x)]
            cells.append("n/a" if k == 0 else f"{m:.2f}" + ("" if k == row["n_seeds"] else f" ({k})"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_report(results: dict, summary: dict, out: Path, plots: list[Path]) -> Path:
    cfg = results["config"]
    ref = results["reference"]
    rg = results["reference_gold"]
    report_beta = float(cfg["report_beta"])
    lines = ["# isdaa lab report", ""]
    wall = results.get("wall_seconds")
    n_runs = len(results["runs"])
    lines += [f"{n_runs} runs; wall time {wall / 60:.1f} min with {cfg['workers']} worker process(es)." if wall else "", ""]
    lines += ["## The world", "", results["world"], "", WHY, ""]
    lines += [
        "## Reference and data", "",
        f"- Reference: tiny Llama (hidden {ref['hidden_size']}, {ref['num_layers']} layers) fitted by plain SFT "
        f"({ref['steps']} steps × {ref['batch_size']} fresh base samples): KL(base‖ref) = {ref['kl_base_ref']:.3f} ± "
        f"{ref['kl_base_ref_se']:.3f} nats per response ({ref['kl_base_ref_per_token']:.4f} per token; base entropy "
        f"{ref['base_entropy']:.2f} nats).",
        f"- Reference gold reward on the held-out prompts: {rg['gold']:.3f} ± {rg['gold_se']:.3f} ({rg['n']} samples; "
        f"the base distribution's: {rg['base_gold']:.3f}); mean length {rg['length']:.2f} words. "
        f"A run **collapses** when its final gold is below {rg['gold']:.3f}.",
    ]
    for seed, st in list(results["pairs"].items())[:1]:
        lines.append(
            f"- Pairs (seed {seed}; each training seed has its own pair set): {st['n_pairs']} pairs, Bradley–Terry labels "
            f"at temperature {st['label_temperature']}; gold chosen {st['gold_chosen']:.2f} vs rejected "
            f"{st['gold_rejected']:.2f}; length chosen {st['length_chosen']:.2f} vs rejected {st['length_rejected']:.2f}; "
            f"{100 * st['ties']:.0f}% ties in gold; labels agree with the gold reward on {100 * st['agreement']:.1f}% of "
            f"the others (BT expects {100 * st['expected_agreement']:.1f}%)."
        )
    lines += ["", "## Protocol", "",
              "| regime | pairs | steps | lr | batch | eval every |", "| --- | --- | --- | --- | --- | --- |"]
    from isdaa.lab.sweep import regime_steps

    for reg in results["regimes"]:
        lines.append(f"| {reg['name']} | {reg['n_pairs']} | {regime_steps(reg)} | {reg['lr']:g} | {reg['batch_size']} | "
                     f"{reg['eval_every']} |")
    lines += ["", "AdamW, cosine schedule to 0.1·lr, gradient clip 1.0, all through `isdaa.train`. Evaluation: "
              f"{cfg['eval_samples']} samples per held-out prompt at temperature 1 (no top-p), KL = k3 estimator "
              "(k1 in results.csv). Methods:", ""]
    for m in results["methods"]:
        lines.append(f"- **{m['label']}**: {', '.join(f'{k}={v}' for k, v in m['overrides'].items()) or 'defaults'}")
    lines.append("")
    for regime, by_beta in summary.items():
        betas = sorted(by_beta, key=lambda b: (b != report_beta, b))
        for beta in betas:
            block = by_beta[beta]
            main = beta == report_beta
            lines += [f"## {'Results' if main else 'Also'}: {regime}, β = {beta:g}", ""]
            why = block.get("budget_rule", "")
            lines += [f"Seed means ± SE over seeds. KL in nats (k3). The frontier column interpolates every run's curve "
                      f"(gold vs √KL, where it first reaches it; seeds that never do are left out and counted) at "
                      f"√KL = {_f(block['budget_sqrt_kl'])}, i.e. KL = "
                      f"{_f(block['budget_sqrt_kl'] ** 2, 1)} ({why}). \"best gold\" is an oracle early stop (the "
                      f"checkpoint picked with the gold reward); \"gain given back\" = (peak − final)/(peak − start) of the "
                      f"seed-mean curve; \"collapsed\" = final gold below the reference's {rg['gold']:.3f}; ESS = "
                      f"(Σw)²/(n·Σw²) per batch of n pairs (1/n = one pair carries the batch).", ""]
            lines += _table(block, rg["gold"]) + [""]
            lines += [f"Frontier: gold where the run's √KL first reaches each value (seed mean; n/a: no seed gets "
                      f"there; (k) = only k seeds do).", ""] + _grid_table(block) + [""]
            if main:
                lines += ["### Verdict (generated from the numbers above)", ""]
                lines += _verdict(results, regime, beta, block) + [""]
                dpo = _dpo_label(results["methods"])
                if dpo:
                    mech = _mechanism(results, regime, beta, dpo)
                    if mech:
                        lines += [f"### What {dpo}'s policy looks like (seed means)", ""] + mech + [
                            "", "Off-support tokens: generated tokens outside the base distribution's 48 topic words (prompt "
                            "words, special tokens) — responses the data never contain (see the reference row). "
                            "\"No EOS by 17 tokens\": samples cut at the length limit.", ""]
    lines += ["## Figures", ""]
    for p in plots:
        lines.append(f"![{p.stem}]({p.name})")
    lines += ["", "## Files", "",
              "`results.json` (everything, incl. every evaluation), `results.csv` (one row per run × evaluation), "
              "`reference/` (the SFT reference + tokenizer), `pairs/` (TRL JSONL with behaviour log-probs), "
              "`eval_prompts.txt`, `runs/` (each run's config.yaml and metrics.jsonl)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


WHY = """**Why over-optimization happens here.** Near the data (reference samples: about 3 words, rarely a
repeated target, never beyond 12 words) the gold reward grows with the number of target words, and longer
responses hold more of them, so the Bradley–Terry labels reward target words and length almost linearly. The
penalties act on features the data hardly cover (repeated targets, more than 12 words), and nothing in the data
constrains tokens that never occur in a response at all (the prompt's own words, the special tokens). A DAA
fits its implicit reward β·log π/π_ref by pushing the likelihood of the data's responses around — and with a
small β and many passes over few pairs it keeps going long after the pairs are separated: both the chosen and
the rejected responses lose likelihood, and the freed mass lands on responses outside the data's support
(longer, repeating targets, then tokens no response ever contained). The gold reward first rises (more target
words), then falls (repetition, length, off-support words) while the KL to the reference keeps growing. The
table "What the policy looks like" below shows the measured mix."""


def write_outputs(results: dict, out: Path) -> Path:
    """results.csv, plots, report.md; adds `summary` to `results`. Returns the report's path."""
    from isdaa.lab.sweep import write_csv

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
    import json

    out = Path(out_dir)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results.pop("summary", None)
    for run in results["runs"]:  # JSON turned the float keys into floats already; keep beta a float
        run["beta"] = float(run["beta"])
    return write_outputs(results, out)
