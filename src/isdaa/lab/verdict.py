"""The lab report's generated text: the results tables, the verdict and what the over-optimizing policy
looks like — all written from the summary's numbers (`isdaa.lab.summary`).

Differences are called "higher"/"lower" only when they exceed twice their standard error over seeds,
otherwise "no clear difference" (`compare`).
"""

from __future__ import annotations

import math

import numpy as np

from isdaa.lab.summary import SQRT_KL_GRID, mean_curve

__all__ = ["fmt", "fmt_mean_se", "compare", "base_method", "dpo_label", "mechanism_table", "verdict",
           "results_table", "frontier_table", "constrained_table"]


# ------------------------------------------------------------------------------------------ formatting
def fmt(x, nd=2) -> str:
    """`x` with `nd` decimals, "n/a" for None or a non-finite value."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def fmt_mean_se(t, nd=2) -> str:
    """A (mean, se, n) tuple as "m ± se" ("m" without a finite SE, "n/a" without a finite mean)."""
    m, se, n = t
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.{nd}f}" if not np.isfinite(se) else f"{m:.{nd}f} ± {se:.{nd}f}"


def compare(a, b) -> str:
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


# ------------------------------------------------------------------------------------------ which method is which
def _plain(overrides: dict) -> bool:
    """Unweighted and unregularised (no SFT term, no loss hyper-parameters)."""
    return overrides.get("weighting", "none") == "none" and not overrides.get("sft_eta") and not overrides.get("hparams")


def base_method(label: str, methods: list[dict]) -> str | None:
    """The unweighted, unregularised method with the same loss (IS-DPO → DPO), if listed."""
    by = {m["label"]: m["overrides"] for m in methods}
    o = by[label]
    if o.get("weighting", "none") == "none":
        return None
    for other, oo in by.items():
        if oo.get("loss", "sigmoid") == o.get("loss", "sigmoid") and _plain(oo):
            return other
    return None


def dpo_label(methods: list[dict]) -> str | None:
    """The label of plain DPO (sigmoid loss, unweighted, unregularised), if listed."""
    for m in methods:
        o = m["overrides"]
        if o.get("loss", "sigmoid") == "sigmoid" and _plain(o):
            return m["label"]
    return None


# ------------------------------------------------------------------------------------------ the policy at its peak
def mechanism_table(results: dict, regime: str, beta: float, label: str) -> list[str]:
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
        rows.append(f"| {name} | {fmt(vals['gold'])} | {fmt(vals['kl_k3'], 1)} | {fmt(vals['length'], 1)} | "
                    f"{fmt(vals['target_hits'])} | {fmt(vals['target_repeats'])} | {100 * vals['off_vocab']:.0f}% | "
                    f"{100 * (1 - vals['finished']):.0f}% | {'; '.join(f'`{x}`' for x in ex)} |")
    head = ["| policy | gold | KL | length | distinct targets | extra target copies | off-support tokens | "
            "no EOS | samples (seed 0) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    return head + rows


# ------------------------------------------------------------------------------------------ the verdict
def _dpo_line(dpo: str | None, table: dict) -> list[str]:
    """Whether plain DPO over-optimizes (its seed-mean curve gives back ≥ 15% of its gain while KL grows)."""
    if dpo not in table or "curve" not in table[dpo]:
        return []
    c = table[dpo]["curve"]
    ok = c["gain"] > 0 and c["lost_share"] >= 0.15 and c["kl_grows_after_peak"]
    lost = f"{100 * c['lost_share']:.0f}%" if np.isfinite(c["lost_share"]) else "none"
    return [
        f"- **{dpo} {'over-optimizes' if ok else 'does not over-optimize'} here** (seed-mean curve; criterion: "
        f"gives back ≥ 15% of its gain while KL keeps growing): gold {c['gold0']:.2f} → peak {c['peak_gold']:.2f} "
        f"at step {c['peak_step']} (KL {c['peak_kl']:.1f}) → {c['final_gold']:.2f} at the end "
        f"(KL {c['final_kl']:.1f}); gain given back: {lost}; KL after the peak "
        f"{'grows' if c['kl_grows_after_peak'] else 'does not grow'}."
    ]


def _best_lines(block: dict) -> list[str]:
    """The best method by the frontier, the best checkpoint and the final policy, and who is within 2 SE."""
    table = block["methods"]
    labels = list(table)
    lines = []
    for key, name in (("gold_at_budget", f"the frontier (gold at √KL = {block['budget_sqrt_kl']:.2f})"),
                      ("best_gold", "the best checkpoint (oracle early stopping)"),
                      ("final_gold", "the final policy (the paper's framing)")):
        ranked = sorted((m for m in labels if np.isfinite(table[m][key][0])), key=lambda m: -table[m][key][0])
        if not ranked:
            continue
        top = ranked[0]
        tied = [m for m in ranked[1:] if compare(table[top][key], table[m][key]) in ("lower", "no clear difference")]
        if key == "gold_at_budget":
            missing = [m for m in labels if table[m][key][2] < table[m]["n_seeds"]]
            name += " among methods whose seeds reach it" + (
                f" ({', '.join(missing)} stop short of it in some or all seeds)" if missing else "")
        if len(ranked) == 1:
            tail = ""
        elif tied:
            tail = f"; within 2 SE of it: {', '.join(f'{m} ({table[m][key][0]:.2f})' for m in tied)}"
        else:
            tail = " (ahead of every other method by more than 2 SE)"
        lines.append(f"- Best by {name}: **{top}** ({fmt_mean_se(table[top][key])}){tail}.")
    return lines


def _vs_base_lines(methods: list[dict], table: dict) -> list[str]:
    """Each weighted method against its unweighted base (IS-DPO vs DPO)."""
    lines = []
    for label in table:
        base = base_method(label, methods)
        if base is None or base not in table:
            continue
        a, b = table[label], table[base]
        lines.append(
            f"- {label} vs {base}: final gold {compare(a['final_gold'], b['final_gold'])} "
            f"({fmt_mean_se(a['final_gold'])} vs {fmt_mean_se(b['final_gold'])}); gold at the KL budget "
            f"{compare(a['gold_at_budget'], b['gold_at_budget'])} ({fmt_mean_se(a['gold_at_budget'])} vs "
            f"{fmt_mean_se(b['gold_at_budget'])}); best checkpoint {compare(a['best_gold'], b['best_gold'])}; final KL "
            f"{fmt_mean_se(a['final_kl'], 1)} vs {fmt_mean_se(b['final_kl'], 1)}; collapsed seeds "
            f"{a['collapsed']}/{a['n_seeds']} vs {b['collapsed']}/{b['n_seeds']}; "
            f"min ESS {fmt(a['min_ess_overall'], 3)}."
        )
    return lines


def _frontier_what(both: list, fk: tuple) -> str:
    """How a method that wins on final gold fares on the frontier (the grid points both methods reach)."""
    higher = [x for x, c in both if c == "higher"]
    lower = [x for x, c in both if c == "lower"]
    if higher and not lower:
        return f"and also on the frontier (higher gold at √KL = {', '.join(f'{x:g}' for x in higher)})"
    if lower and not higher:
        return (f"but not on the frontier: at equal KL its gold is lower (√KL = {', '.join(f'{x:g}' for x in lower)})"
                f" and nowhere higher — the weight buys its final gold by stopping at a smaller KL "
                f"({fk[0]:.1f} vs {fk[1]:.1f} nats), not by more gold per nat")
    if higher and lower:
        return (f"with a mixed frontier (higher at √KL = {', '.join(f'{x:g}' for x in higher)}, lower at "
                f"{', '.join(f'{x:g}' for x in lower)})")
    return (f"but not on the frontier: at equal KL no clear difference over the range both reach (√KL ≤ "
            f"{max(x for x, _ in both):g}); it ends at a smaller KL ({fk[0]:.1f} vs {fk[1]:.1f} nats)")


def _frontier_lines(methods: list[dict], table: dict) -> list[str]:
    """For each method with a higher final gold than its base: is it also higher at equal KL?"""
    lines = []
    wins_final = [m for m in table if base_method(m, methods) in table
                  and compare(table[m]["final_gold"], table[base_method(m, methods)]["final_gold"]) == "higher"]
    for label in wins_final:
        b = base_method(label, methods)
        grid = [(x, table[label]["frontier_grid"][str(x)], table[b]["frontier_grid"][str(x)]) for x in SQRT_KL_GRID]
        both = [(x, compare(a_, b_)) for x, a_, b_ in grid if a_[2] >= 2 and b_[2] >= 2]
        if not both:
            continue
        fk = (table[label]["final_kl"][0], table[b]["final_kl"][0])
        lines.append(f"- By the final policy {label} beats {b} {_frontier_what(both, fk)}.")
    return lines


def verdict(results: dict, block: dict) -> list[str]:
    """The verdict lines for one regime and β (`block` = its summary)."""
    methods = results["methods"]
    table = block["methods"]
    return (_dpo_line(dpo_label(methods), table) + _best_lines(block) + _vs_base_lines(methods, table)
            + _frontier_lines(methods, table))


# ------------------------------------------------------------------------------------------ tables
def results_table(block: dict) -> list[str]:
    """The main table: one row per method (seed means ± SE)."""
    head = ("| method | best gold | KL at best | gold @ √KL={b} | final gold | final KL | gain given back | "
            "collapsed | min ESS (mean) | min ESS (any seed) | Gao RL fit α, β |").format(b=fmt(block["budget_sqrt_kl"]))
    lines = [head, "| --- " * 11 + "|"]
    for label, row in block["methods"].items():
        g = row.get("gao_rl")
        fit = f"{g['alpha']:.2f}, {g['beta']:.2f}" if g else "n/a"
        at = row["gold_at_budget"]
        at_s = fmt_mean_se(at) + ("" if at[2] == row["n_seeds"] else f" ({at[2]}/{row['n_seeds']} seeds reach it)")
        failed = f" ({row['failed']} stopped)" if row["failed"] else ""
        lines.append(
            f"| {label}{failed} | {fmt_mean_se(row['best_gold'])} | {fmt_mean_se(row['best_kl'], 1)} | {at_s} | "
            f"{fmt_mean_se(row['final_gold'])} | {fmt_mean_se(row['final_kl'], 1)} | "
            f"{fmt(100 * row.get('curve', {}).get('lost_share', math.nan), 0)}% | "
            f"{row['collapsed']}/{row['n_seeds']} | {fmt_mean_se(row['min_ess'], 3)} | {fmt(row['min_ess_overall'], 3)} | "
            f"{fit} |"
        )
    return lines


def frontier_table(block: dict) -> list[str]:
    """Gold where each method's √KL first reaches each grid value (seed mean; (k) = only k seeds do)."""
    lines = ["| method | " + " | ".join(f"√KL={x:g}" for x in SQRT_KL_GRID) + " |",
             "| --- " * (len(SQRT_KL_GRID) + 1) + "|"]
    for label, row in block["methods"].items():
        cells = []
        for x in SQRT_KL_GRID:
            m, _, k = row["frontier_grid"][str(x)]
            cells.append("n/a" if k == 0 else f"{m:.2f}" + ("" if k == row["n_seeds"] else f" ({k})"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def constrained_table(block: dict) -> list[str]:
    """The KL-constrained frontier: the best gold among each run's evaluations with √KL ≤ x (seed mean ± SE),
    and the frontier score (its mean over the grid) that docs/results/RULE.md ranks by."""
    lines = ["| method | " + " | ".join(f"√KL≤{x:g}" for x in SQRT_KL_GRID) + " | frontier score |",
             "| --- " * (len(SQRT_KL_GRID) + 2) + "|"]
    for label, row in block["methods"].items():
        cells = [fmt_mean_se(row["constrained_grid"][str(x)]) for x in SQRT_KL_GRID]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {fmt(row['frontier_score'])} |")
    return lines
