"""The report.md sections of a real-model world (`isdaa.lab.model_world`): the reference and its pairs, what a
method's policy looks like, and the time of every stage as the sweep measured it; all from the results dict."""

from __future__ import annotations

import math

import numpy as np

from isdaa.lab.protocol import ReportSections
from isdaa.lab.verdict import fmt

__all__ = ["REPORT", "WHY", "reference_lines", "policy_table", "timing_lines"]

WHY = """**Why over-optimization can happen here.** The pairs are the model's own samples, labelled by the label
scorer through Bradley–Terry draws; a DAA fits β·log π/π_ref to them. With a small β and several passes over a
fixed set of pairs it keeps moving likelihood after the pairs are separated: the chosen and the rejected
responses both lose likelihood and the freed mass goes to responses the pairs never contain (longer or shorter
ones, repeated sentiment words, text that no longer ends). The gold scorer sees those responses for the first
time; if they score lower, the gold reward rises, peaks and falls while the KL to the reference keeps growing.
Whether it does on this model is what the curves below measure."""


def reference_lines(results: dict) -> list[str]:
    """The report's "Reference and data" section for a model world."""
    rg, world = results["reference_gold"], results["config"]["world"]
    st = next(iter(results["pairs"].values()))
    label = world["label_scorer"] or world["gold"]
    return [
        "## Reference and data", "",
        f"- Reference: the model `{world['model']}` itself (no SFT); every run starts from it.",
        f"- Reference gold reward on the held-out prompts: {rg['gold']:.3f} ± {rg['gold_se']:.3f} ({rg['n']} samples "
        f"over {rg['n_prompts']} prompts); mean length {rg['length']:.1f} tokens, EOS within the limit "
        f"{100 * rg['finished']:.0f}%. A run **collapses** when its final gold is below {rg['gold']:.3f}.",
        f"- Pairs (one set shared by every training seed): {st['n_pairs']} pairs, Bradley–Terry labels on `{label}` at "
        f"temperature {st['label_temperature']}; gold chosen {st['gold_chosen']:.3f} vs rejected "
        f"{st['gold_rejected']:.3f}; label score chosen {st['label_chosen']:.3f} vs rejected {st['label_rejected']:.3f}; "
        f"length chosen {st['length_chosen']:.1f} vs rejected {st['length_rejected']:.1f} tokens; "
        f"{100 * st['ties']:.0f}% ties in gold; labels agree with the gold on {fmt(100 * st['agreement'], 1)}% of the "
        f"others (BT on the label scores expects {fmt(100 * st['expected_agreement'], 1)}%).",
    ]


def policy_table(results: dict, regime: str, beta: float, label: str) -> list[str]:
    """What `label`'s policy looks like at step 0, at its seed-mean gold peak and at the end."""
    runs = [r for r in results["runs"] if r["regime"] == regime and r["beta"] == beta and r["method"] == label]
    if not runs or not runs[0]["evals"]:
        return []
    by_step: dict = {}
    for r in runs:
        for e in r["evals"]:
            by_step.setdefault(e["step"], []).append(e)
    steps = sorted(by_step)
    peak = max(steps, key=lambda s: np.mean([e["gold"] for e in by_step[s]]))
    rows = ["| policy | gold | proxy | KL | length (tokens) | EOS | sample (seed of the first run) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, step in (("reference (step 0)", steps[0]), (f"peak (step {peak})", peak), (f"end (step {steps[-1]})", steps[-1])):
        evs = by_step[step]
        mean = {k: float(np.mean([e.get(k, math.nan) for e in evs])) for k in ("gold", "proxy", "kl_k3", "length", "finished")}
        example = (evs[0].get("examples") or [""])[0].replace("|", "/").replace("\n", " ")
        rows.append(f"| {name} | {fmt(mean['gold'], 3)} | {fmt(mean['proxy'], 3)} | {fmt(mean['kl_k3'], 2)} | "
                    f"{fmt(mean['length'], 1)} | {100 * mean['finished']:.0f}% | `{example[:160]}` |")
    return rows


def _median(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(values)) if values else math.nan


def timing_lines(results: dict) -> list[str]:
    """The per-stage times, as this sweep measured them (pairs, reference gold, a training step, an evaluation)."""
    st = next(iter(results["pairs"].values()))
    rg = results["reference_gold"]
    evals = [e for r in results["runs"] for e in r["evals"]]
    steps = [e.get("step_seconds") for e in evals]
    n_eval = (rg["n_prompts"], results["config"]["eval_samples"])
    per_1000 = 1000 / st["pairs_per_minute"] if st.get("pairs_per_minute") else math.nan
    return [
        "## Stage times (measured by this sweep)", "",
        f"Torch threads per process: 1; worker processes: {results['config']['workers']}. Medians over the runs.", "",
        "| stage | measured | target |", "| --- | --- | --- |",
        f"| labelled pairs | {st['n_pairs']} in {st['seconds']:.0f} s ({st['pairs_per_minute']:.0f} per min; 1,000 in "
        f"{per_1000:.1f} min) | ≥ 1,000 in ≤ 10 min |",
        f"| one training step ({_batch(results)} pairs) | {fmt(_median(steps), 2)} s | ≤ 4 s for 8 pairs (2 idle cores, 2 workers) |",
        f"| one evaluation ({n_eval[0]} prompts × {n_eval[1]} samples) | {fmt(_median(e.get('eval_seconds') for e in evals), 1)} s "
        f"| ≤ 40 s for 64 × 2 |",
        f"| reference gold ({rg['n']} samples) | {rg['seconds']:.0f} s | — |",
        f"| one run, all included | {fmt(_median(r['seconds'] for r in results['runs']) / 60, 1)} min | — |",
    ]


def _batch(results: dict) -> str:
    sizes = sorted({int(reg["batch_size"]) for reg in results["regimes"]})
    return "/".join(str(s) for s in sizes)


FILES_NOTE = ("`results.json` (everything, incl. every evaluation and its time), `results.csv` (one row per run × "
              "evaluation), `prepared.json` (the pairs' and the reference gold's statistics and times), `pairs/` "
              "(TRL JSONL with behaviour = reference log-probs, label and gold scores), `eval_prompts.txt`, "
              "`runs/` (each run's config.yaml, metrics.jsonl and record.json).")

REPORT = ReportSections(
    reference=reference_lines, after_protocol=lambda results: timing_lines(results) + [""], policy_table=policy_table,
    policy_note=lambda results: ("Proxy: the label scorer's mean (n/a when it is the gold scorer). EOS: samples that "
                                 "ended within the token limit."),
    files=FILES_NOTE, why=lambda results: WHY)
