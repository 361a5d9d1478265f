"""Plots of over-optimization: gold reward vs √KL (the frontier) and any metric vs training step.

Inputs are plain lists of floats so the lab and users can pass anything. Figures are drawn on a
`matplotlib.figure.Figure` (Agg rendering, no pyplot global state): `frontier_figure` / `over_steps_figure`
return it, `plot_frontier` / `plot_over_steps` save it to `path` (format from the suffix; parent directories are
created). Every point of a series is marked (they are evaluations: a line through three points is three
measurements, not a trend), and a gold axis names its scorer (`gold_axis_label`).

A series is `(x, mean)` or `(x, mean, lo, hi)`: lo/hi (e.g. mean ∓ 1.96·SE) draw a shaded band; None skips it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from isdaa.eval.curves import fit_bon, fit_rl, gao_bon, gao_rl

__all__ = ["plot_frontier", "plot_over_steps", "frontier_figure", "over_steps_figure", "gold_axis_label", "ci_bounds",
           "GOLD_REWARD"]

GOLD_REWARD = "gold reward"


def ci_bounds(means: Sequence[float], ses: Sequence[float], z: float = 1.96) -> tuple[list[float], list[float]]:
    """(lo, hi) = mean ∓ z·SE, elementwise (NaN SEs give NaN bounds, which are not drawn)."""
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(ses, dtype=np.float64)
    return (m - z * s).tolist(), (m + z * s).tolist()


def _unpack(label, series):
    if len(series) not in (2, 4):
        raise ValueError(f"series {label!r}: expected (x, mean) or (x, mean, lo, hi)")
    x = np.asarray(series[0], dtype=np.float64)
    y = np.asarray(series[1], dtype=np.float64)
    lo = hi = None
    if len(series) == 4 and series[2] is not None and series[3] is not None:
        lo = np.asarray(series[2], dtype=np.float64)
        hi = np.asarray(series[3], dtype=np.float64)
    for arr in (y, lo, hi):
        if arr is not None and arr.shape != x.shape:
            raise ValueError(f"series {label!r}: x and values differ in length")
    return x, y, lo, hi


def gold_axis_label(scorers) -> str:
    """"gold reward (<scorer>)": the distinct scorer names in `scorers` (None and "" left out), joined by " / ";
    "gold reward (scorer not recorded)" when there is none."""
    names = list(dict.fromkeys(str(s) for s in scorers if s))
    return f"{GOLD_REWARD} ({' / '.join(names) if names else 'scorer not recorded'})"


def _draw(ax, label, series, marker="o"):
    x, y, lo, hi = _unpack(label, series)
    (line,) = ax.plot(x, y, marker=marker, markersize=3, label=str(label))
    if lo is not None:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line, x, y


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_frontier(curves: Mapping[str, Sequence], path, title: str = "gold reward vs sqrt(KL)",
                  ref_gold: float | None = None, **options) -> Path:
    """`frontier_figure` saved to `path`."""
    return _save(frontier_figure(curves, title, ref_gold, **options), path)


def frontier_figure(
    curves: Mapping[str, Sequence],
    title: str = "gold reward vs sqrt(KL)",
    ref_gold: float | None = None,
    *,
    fit: str | None = None,
    xlabel: str = "sqrt(KL(policy || reference))  [sqrt(nats)]",
    ylabel: str = GOLD_REWARD,
) -> Figure:
    """Gold reward vs d = √KL, one line (with CI band) per label, and a dashed line at `ref_gold`; `ylabel`:
    name the scorer (`gold_axis_label`).

    `curves[label] = (d_values, gold_means, gold_lo, gold_hi)` (lo/hi may be None). `fit="rl"` or `"bon"`
    overlays the Gao et al. form fitted to each curve's points (with r0 = ref_gold or 0) as a dotted line.
    """
    if fit not in (None, "rl", "bon"):
        raise ValueError(f"fit must be None, 'rl' or 'bon', got {fit!r}")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for label, series in curves.items():
        line, d, y = _draw(ax, label, series)
        if fit is not None and np.sum(d > 0) >= 2:
            r0 = ref_gold if ref_gold is not None else 0.0
            params = (fit_rl if fit == "rl" else fit_bon)(d, y, r0)
            grid = np.linspace(0.0, float(d.max()), 100)
            form = gao_rl if fit == "rl" else gao_bon
            ax.plot(grid, form(grid, params["alpha"], params["beta"], r0), ":", color=line.get_color(), linewidth=1)
    if ref_gold is not None:
        ax.axhline(ref_gold, color="gray", linestyle="--", linewidth=1, label="reference")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_over_steps(series: Mapping[str, Sequence], path, ylabel: str, **options) -> Path:
    """`over_steps_figure` saved to `path`."""
    return _save(over_steps_figure(series, ylabel, **options), path)


def over_steps_figure(
    series: Mapping[str, Sequence],
    ylabel: str,
    *,
    title: str | None = None,
    xlabel: str = "step",
    hline: float | None = None,
    logy: bool = False,
) -> Figure:
    """Any metric (gold, KL, ESS, length, ...) vs training step: `series[label] = (steps, means, lo, hi)`."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for label, s in series.items():
        _draw(ax, label, s)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle="--", linewidth=1)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return fig
