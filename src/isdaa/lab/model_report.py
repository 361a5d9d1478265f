"""The report.md sections of a real-model world (`isdaa.lab.model_world`): the reference and its pairs, what a
method's policy looks like, and the time of every stage as the sweep measured it; all from the results dict."""

from __future__ import annotations

import math

import numpy as np

from isdaa.lab.protocol import ReportSections
from isdaa.lab.verdict import fmt

__all__ = ["REPORT", "WHY", "reference_lines", "policy_table", "methods_table", "timing_lines"]

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


def _by_step(results: dict, regime: str, beta: float, label: str) -> dict:
    """{step: [the evaluation of each seed's run at that step]} of `label`'s runs."""
    by_step: dict = {}
    for r in results["runs"]:
        if r["regime"] == regime and r["beta"] == beta and r["method"] == label:
            for e in r["evals"]:
                by_step.setdefault(e["step"], []).append(e)
    return by_step


def _peak(by_step: dict) -> int:
    """The step of the highest seed-mean gold."""
    return max(sorted(by_step), key=lambda s: np.mean([e["gold"] for e in by_step[s]]))


def _example(evs: list[dict]) -> str:
    """The first run's first example, "prompt -> completion", on one line of a markdown table."""
    return (evs[0].get("examples") or [""])[0].replace("|", "/").replace("\n", " ")


def _point_cells(evs: list[dict], completion_only: bool = False) -> str:
    """gold | proxy | KL | length | EOS | sample: seed means, and the first run's first example (its completion
    alone when `completion_only`)."""
    mean = {k: float(np.mean([e.get(k, math.nan) for e in evs])) for k in ("gold", "proxy", "kl_k3", "length", "finished")}
    example = _example(evs).split(" -> ", 1)[-1] if completion_only else _example(evs)
    return (f"{fmt(mean['gold'], 3)} | {fmt(mean['proxy'], 3)} | {fmt(mean['kl_k3'], 2)} | {fmt(mean['length'], 1)} | "
            f"{100 * mean['finished']:.0f}% | `{example[:160]}`")


def policy_table(results: dict, regime: str, beta: float, label: str) -> list[str]:
    """What `label`'s policy looks like at step 0, at its seed-mean gold peak and at the end."""
    by_step = _by_step(results, regime, beta, label)
    if not by_step:
        return []
    steps, peak = sorted(by_step), _peak(by_step)
    rows = ["| policy | gold | proxy | KL | length (tokens) | EOS | sample (seed of the first run) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, step in (("reference (step 0)", steps[0]), (f"peak (step {peak})", peak), (f"end (step {steps[-1]})", steps[-1])):
        rows.append(f"| {name} | {_point_cells(by_step[step])} |")
    return rows


def methods_table(results: dict, regime: str, beta: float) -> list[str]:
    """Every method's policy at its seed-mean gold peak and at its last evaluation (gold, proxy, KL, length, EOS
    rate and a sample)."""
    rows, prompt = [], ""
    for method in results["methods"]:
        by_step = _by_step(results, regime, beta, method["label"])
        if not by_step:
            continue
        peak, end = _peak(by_step), max(by_step)
        prompt = prompt or _example(by_step[end]).split(" -> ", 1)[0]
        rows.append(f"| {method['label']} | peak (step {peak}) | {_point_cells(by_step[peak], True)} |")
        rows.append(f"| | end (step {end}) | {_point_cells(by_step[end], True)} |")
    if not rows:
        return []
    return [f"Each sample answers the first held-out prompt, `{prompt}`, in the first seed's run.", "",
            "| method | policy | gold | proxy | KL | length (tokens) | EOS | sample |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows


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
    files=FILES_NOTE, why=lambda results: WHY, methods_table=methods_table)
