"""Collects the outputs of run.sh into results.md (tables) and results.json; prints the markdown.

    python examples/smollm2-sentiment/table.py runs/smollm2-sentiment [--results DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

METHODS = [("base", "base (SmolLM2-135M-Instruct)"), ("dpo", "DPO + LoRA"), ("is-dpo", "IS-DPO + LoRA")]


def pm(value, se, digits=3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if se is None else f"{value:.{digits}f} ± {se:.{digits}f}"


def last_metrics(run: Path) -> tuple[dict, dict]:
    """(last training-step record, last held-out record) from a run's metrics.jsonl."""
    train, held = {}, {}
    path = run / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "loss" in rec:
                train = rec
            if "eval/loss" in rec:
                held = rec
    return train, held


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    out = args.out

    evals = {m: json.loads((out / f"eval_{m}.json").read_text()) for m, _ in METHODS}
    pairs = json.loads((out / "train_pairs.stats.json").read_text())
    eval_pairs = json.loads((out / "eval_pairs.stats.json").read_text())
    timings, cpu = {}, {}  # stage -> wall seconds, CPU seconds (user + sys; absent in older runs)
    for line in (out / "timings.tsv").read_text().splitlines():
        if line.strip():
            name, *values = line.split("\t")
            timings[name] = float(values[0])
            if len(values) > 1:
                cpu[name] = float(values[1])
    runs = {m: last_metrics(out / m) for m, _ in METHODS if m != "base"}
    cfg = evals["base"]["config"]

    lines = [
        f"Gold = VADER compound sentiment of the completion in [-1, 1]; {evals['base']['n_prompts']} held-out prompts x "
        f"{cfg['n_samples']} samples at T = 1, {cfg['max_new_tokens']} new tokens at most; ± = one standard error "
        "(clustered by prompt). Win rate: against base-model samples of the same prompts (ties ½). "
        "KL(policy ‖ base) by the k3 estimator on the policy's samples.",
        "",
        "| model | gold (VADER) | win rate vs base | KL k3 | mean length (tokens) | finished |",
        "|---|---|---|---|---|---|",
    ]
    for m, label in METHODS:
        e = evals[m]
        lines.append(
            f"| {label} | {pm(e['gold_mean'], e['gold_se'])} | {pm(e['win_rate'], e['win_rate_se'])} | "
            f"{pm(e['kl_k3'], e['kl_k3_se'])} | {e['length_mean']:.1f} | {e['finished_frac']:.2f} |"
        )
    lines += [
        "",
        "| run | steps | final train loss | held-out pref. accuracy | held-out loss | mean IS weight (last step) |",
        "|---|---|---|---|---|---|",
    ]
    for m, label in METHODS[1:]:
        tr, held = runs[m]
        lines.append(
            f"| {label} | {tr.get('step', '–')} | {pm(tr.get('loss'), None)} | {pm(held.get('eval/rewards/accuracies'), None, 2)} | "
            f"{pm(held.get('eval/loss'), None)} | {pm(tr.get('weights/mean'), None) if m != 'dpo' else '– (unweighted)'} |"
        )
    lines += [
        "",
        f"Pairs: {pairs['n_pairs']} train pairs from {pairs['n_prompts']} prompts (VADER of chosen "
        f"{pairs['chosen_score_mean']:.3f}, rejected {pairs['rejected_score_mean']:.3f}; higher-scored chosen in "
        f"{pairs['chosen_higher_frac']:.0%}), {eval_pairs['n_pairs']} held-out pairs.",
        "",
        f"Time on {args.threads} CPU threads ({platform.machine()}, {os.cpu_count()} cores visible); CPU = user + sys of the stage:",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} | {cpu[k]:.0f} |" if k in cpu else f"| {k} | {v:.0f} | – |" for k, v in timings.items()]
    text = "\n".join(lines) + "\n"

    summary = {
        "eval": {m: {k: evals[m].get(k) for k in ("gold_mean", "gold_se", "win_rate", "win_rate_se", "kl_k3", "kl_k3_se",
                                                   "kl_k1", "kl_k1_se", "length_mean", "finished_frac", "n_prompts",
                                                   "n_samples", "baseline_gold_mean", "elapsed_s")}
                 for m, _ in METHODS},
        "train": {m: {"last_step": runs[m][0], "held_out": runs[m][1]} for m, _ in METHODS[1:]},
        "pairs": {k: {f: v for f, v in p.items() if f not in ("config", "out")} for k, p in (("train", pairs), ("eval", eval_pairs))},
        "timings_s": timings,
        "cpu_s": cpu,
        "threads": args.threads,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.md").write_text(text, encoding="utf-8")
    (args.results / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
