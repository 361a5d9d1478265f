"""`isdaa plot RUN_DIR [RUN_DIR ...]`: figures of training runs from their `metrics.jsonl`, and a summary.

Figures (PNG, Agg; one curve per run, labelled by the run directory's name; `run_figures` draws them):
- `training.png`: the unweighted DAA loss (`loss/base`: runs with and without importance weights compare on it),
  the loss as optimized (`loss`: × the weights, + the SFT term; left out when it is `loss/base` in every run) and
  preference accuracy; held-out `eval/` values as dashed lines with a marker at each evaluation;
- `weights.png`: the importance weights' mean, ESS and clipped fraction;
- `kl_data.png`: the on-data Δ, `kl/chosen` and `kl/rejected` (mean log-ratio on the dataset's responses);
- `monitor.png` (monitored runs): the sampled KL (k3, ±1.96 SE), gold (when scored; the axis names the run's
  `monitor.scorer`, read from its config.yaml), length and EOS rate, a marker at each evaluation;
- `frontier.png` (monitored runs with a scorer): gold against √KL.
One run: into `RUN/plots/`, with `RUN/summary.md`. Several (or `out` given): figures and `summary.md` into
`out` (default: `plots/` in the runs' common parent directory). `summary.md` embeds the figures under a
table of each run's final numbers (last logged values; the best checkpoint; why a run stopped early).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from matplotlib.figure import Figure

from isdaa.config import read_yaml
from isdaa.errors import InputError
from isdaa.eval.monitor import BEST_FILE
from isdaa.eval.plots import GOLD_REWARD, _draw, _save, ci_bounds, frontier_figure, gold_axis_label  # one drawing helper
from isdaa.eval.stats import is_finite_number
from isdaa.runtime import atomic_write_text, read_metrics

__all__ = ["plot_runs", "run_figures", "gold_label", "run_summary", "FILES"]

BASE_LOSS = ("loss/base", "DAA loss, unweighted (loss/base)")
OPTIMIZED_LOSS = ("loss", "loss as optimized (x weights, + SFT)")
TRAINING = [BASE_LOSS, OPTIMIZED_LOSS, ("rewards/accuracies", "preference accuracy")]
WEIGHTS = [("weights/mean", "mean weight"), ("weights/ess", "ESS (share of the batch)"),
           ("weights/clipped_frac", "clipped fraction")]
ON_DATA = [("kl/chosen", "kl/chosen (mean Δ, chosen)"), ("kl/rejected", "kl/rejected (mean Δ, rejected)")]
MONITOR = [("monitor/kl_k3", "sampled KL (k3) [nats]"), ("monitor/gold", GOLD_REWARD),
           ("monitor/length", "length [tokens]"), ("monitor/eos_rate", "EOS rate")]
FILES = {"training": "training.png", "weights": "weights.png", "on-data KL": "kl_data.png", "monitor": "monitor.png",
         "frontier": "frontier.png"}
HELD_OUT = {"linestyle": "--", "marker": "o", "markersize": 4}  # an evaluation: a marker on each point


def _series(records: list[dict], key: str) -> tuple | None:
    """(steps, values[, lo, hi]) of `key` over the records that hold a finite value; a band from `<key>_se`."""
    rows = [r for r in records if is_finite_number(r.get(key))]
    if not rows:
        return None
    steps, values = [r["step"] for r in rows], [r[key] for r in rows]
    ses = [r.get(f"{key}_se") for r in rows]
    if all(is_finite_number(s) for s in ses):
        return (steps, values, *ci_bounds(values, ses))
    return steps, values


def _panels(runs: dict[str, list[dict]], panels: list[tuple[str, str]], dashed_prefix: str = "") -> Figure | None:
    """One figure, a panel per (metric, y label) that some run holds; None when no run holds any."""
    present = [(k, y) for k, y in panels if any(_series(r, k) for r in runs.values())]
    if not present:
        return None
    cols = 2 if len(present) == 4 else len(present)
    rows = math.ceil(len(present) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.0 * rows))
    for i, (key, ylabel) in enumerate(present):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, records in runs.items():
            series, color = _series(records, key), None
            if series is not None:
                color = _draw(ax, label, series)[0].get_color()
            held_out = _series(records, dashed_prefix + key) if dashed_prefix else None
            if held_out is not None:
                ax.plot(held_out[0], held_out[1], color=color, label=f"{label} (held-out)", **HELD_OUT)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    return fig


def _same_loss(runs: dict[str, list[dict]]) -> bool:
    """Whether `loss` is `loss/base` at every step of every run (no weights, no SFT term: one panel says it)."""
    pairs = [(r[OPTIMIZED_LOSS[0]], r.get(BASE_LOSS[0])) for records in runs.values() for r in records
             if is_finite_number(r.get(OPTIMIZED_LOSS[0]))]
    return bool(pairs) and all(is_finite_number(b) and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
                               for a, b in pairs)


def _frontier(runs: dict[str, list[dict]], gold: str) -> Figure | None:
    """Gold against √KL (k3) of every monitored, scored run; None when there is none."""
    curves = {}
    for label, records in runs.items():
        rows = [r for r in records if is_finite_number(r.get("monitor/gold")) and is_finite_number(r.get("monitor/kl_k3"))]
        if rows:
            gold_means = [r["monitor/gold"] for r in rows]
            ses = [r.get("monitor/gold_se") for r in rows]
            band = ci_bounds(gold_means, ses) if all(is_finite_number(s) for s in ses) else (None, None)
            curves[label] = ([math.sqrt(max(r["monitor/kl_k3"], 0.0)) for r in rows], gold_means, *band)
    if not curves:
        return None
    return frontier_figure(curves, title="gold vs sqrt(KL) while training", ylabel=gold)


def run_figures(runs: dict[str, list[dict]], gold: str = gold_axis_label([])) -> dict[str, Figure]:
    """The figures of `FILES` that the runs' metrics hold (label -> records); `gold`: the gold axis's label
    (`gold_axis_label` of the runs' scorers)."""
    training = [p for p in TRAINING if not (p == OPTIMIZED_LOSS and _same_loss(runs))]
    monitor = [(k, gold if k == "monitor/gold" else y) for k, y in MONITOR]
    figures = {
        "training": _panels(runs, training, dashed_prefix="eval/"),
        "weights": _panels(runs, WEIGHTS),
        "on-data KL": _panels(runs, ON_DATA),
        "monitor": _panels(runs, monitor),
        "frontier": _frontier(runs, gold),
    }
    return {k: v for k, v in figures.items() if v is not None}


def _scorer(run_dir: Path) -> str | None:
    """The run's `monitor.scorer` from its config.yaml (None: no monitor scorer, or no readable config)."""
    try:
        scorer = read_yaml(run_dir / "config.yaml").get("monitor", {}).get("scorer")
    except (InputError, AttributeError):
        return None
    return None if scorer in (None, "none") else str(scorer)


def gold_label(run_dirs: list) -> str:
    """The gold axis of these runs: "gold reward (<their monitor.scorer names>)"."""
    return gold_axis_label([_scorer(Path(d)) for d in run_dirs])


def _load(run_dirs: list) -> dict[str, list[dict]]:
    """label -> records for every run directory; InputError (nothing written) for one without metrics."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise InputError("isdaa plot: expected at least one run directory (isdaa plot RUN_DIR [RUN_DIR ...])")
    names = [d.resolve().name for d in dirs]
    runs = {}
    for d, name in zip(dirs, names):
        records = read_metrics(d)
        if not records:
            raise InputError(f"{d}: no metrics.jsonl with records (expected the run directory of an isdaa train run)")
        runs[str(d) if names.count(name) > 1 else name] = records
    return runs


def plot_runs(run_dirs: list, out_dir=None) -> list[Path]:
    """The figures (and summary.md) of `run_dirs`; returns the files written (see the module docstring)."""
    runs = _load(run_dirs)
    dirs = [Path(d) for d in run_dirs]
    if out_dir is None and len(dirs) == 1:
        out_dir, summary = dirs[0] / "plots", dirs[0] / "summary.md"
    else:
        out_dir = Path(out_dir or Path(os.path.commonpath([d.resolve().parent for d in dirs])) / "plots")
        summary = out_dir / "summary.md"
    figures = {name: _save(fig, out_dir / FILES[name]) for name, fig in run_figures(runs, gold_label(dirs)).items()}
    bests = {label: _best(d) for label, d in zip(runs, dirs)}
    links = {k: os.path.relpath(v, summary.parent) for k, v in figures.items()}
    atomic_write_text(summary, run_summary(runs, bests, links))
    return [*figures.values(), summary]


def _best(run_dir: Path) -> dict | None:
    path = run_dir / "best" / BEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _last(records: list[dict], key: str):
    values = [r[key] for r in records if is_finite_number(r.get(key))]
    return values[-1] if values else None


def _fmt(value, se=None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g} ± {se:.2g}" if is_finite_number(se) else f"{value:.4g}"


def _stop_note(records: list[dict]) -> str:
    """Why the run stopped early, if it did (a stop followed by later steps: stopped, then resumed)."""
    stops = [r for r in records if isinstance(r.get("stop_reason"), str)]
    if not stops:
        return "–"
    last_step = max(r.get("step", 0) for r in records)
    stop = stops[-1]
    note = f"step {stop['step']}: {stop['stop_reason']}"
    return note if stop["step"] >= last_step else f"{note} (then resumed)"


def _row(label: str, records: list[dict], best: dict | None) -> str:
    ess = [r["weights/ess"] for r in records if is_finite_number(r.get("weights/ess"))]
    cells = [
        label, str(max(r.get("step", 0) for r in records)), _fmt(_last(records, "loss")),
        _fmt(_last(records, "rewards/accuracies")), _fmt(_last(records, "eval/rewards/accuracies")),
        _fmt(min(ess) if ess else None), _fmt(_last(records, "kl/chosen")), _fmt(_last(records, "kl/rejected")),
        _fmt(_last(records, "monitor/kl_k3"), _last(records, "monitor/kl_k3_se")),
        _fmt(_last(records, "monitor/gold"), _last(records, "monitor/gold_se")),
        "–" if best is None else
        f"step {best['step']}: gold {best['monitor/gold']:.4g} at KL {_fmt(best.get('monitor/kl_k3'))}",
        _stop_note(records),
    ]
    return "| " + " | ".join(cells) + " |"


def run_summary(runs: dict[str, list[dict]], bests: dict[str, dict | None], figures: dict[str, str]) -> str:
    """summary.md: the final numbers of each run, then the figures (paths relative to the summary)."""
    header = ["run", "last step", "loss", "accuracy", "held-out accuracy", "min ESS", "kl/chosen", "kl/rejected",
              "sampled KL (k3)", "gold", "best/", "stopped early"]
    lines = [
        "# " + ("Run " + next(iter(runs)) if len(runs) == 1 else f"{len(runs)} runs"), "",
        "Last logged value of each quantity (± its standard error; sampled KL and gold from the in-run monitor).", "",
        "| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
    ]
    lines += [_row(label, records, bests.get(label)) for label, records in runs.items()]
    lines.append("")
    for name, path in figures.items():
        lines += [f"![{name}]({path})", ""]
    return "\n".join(lines)
