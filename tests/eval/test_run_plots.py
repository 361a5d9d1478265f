"""The figures say what they plot (checked on the matplotlib Figure objects, not on pixels): training.png's first
loss panel is the unweighted DAA loss (an IS run and a DPO run compare on it) and the weighted loss is labelled as
such; every evaluation point (held-out, monitor, lab curves) carries a marker; every gold axis names its scorer."""

from __future__ import annotations

import json

import numpy as np

from isdaa.eval import run_plots
from isdaa.eval.plots import frontier_figure, gold_axis_label, over_steps_figure
from isdaa.eval.run_plots import gold_label, plot_runs, run_figures


def _is_run(steps=6, eval_steps=(0, 3, 6)) -> list[dict]:
    """An importance-weighted run: the loss as optimized (× weights) is far from the unweighted one."""
    records = [{"step": s, "loss": 0.01 * (s + 1), "loss/base": 0.69 - 0.01 * s, "rewards/accuracies": 0.5,
                "weights/mean": 0.02} for s in range(1, steps + 1)]
    records += [{"step": s, "eval/loss": 0.02, "eval/loss/base": 0.7 - 0.02 * s, "eval/rewards/accuracies": 0.5}
                for s in eval_steps]
    records += [{"step": s, "monitor/kl_k3": 0.1 * s, "monitor/kl_k3_se": 0.01, "monitor/gold": 0.1 + 0.05 * s,
                 "monitor/gold_se": 0.02, "monitor/length": 5.0, "monitor/eos_rate": 0.9} for s in eval_steps]
    return records


def _dpo_run(steps=6) -> list[dict]:
    """No weights, no SFT term: `loss` is `loss/base`."""
    return [{"step": s, "loss": 0.69 - 0.01 * s, "loss/base": 0.69 - 0.01 * s, "rewards/accuracies": 0.5}
            for s in range(1, steps + 1)]


def _ylabels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes]


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_training_plots_the_unweighted_loss_and_labels_the_weighted_one():
    fig = run_figures({"is": _is_run(), "dpo": _dpo_run()})["training"]
    assert _ylabels(fig) == ["DAA loss, unweighted (loss/base)", "loss as optimized (x weights, + SFT)",
                             "preference accuracy"]
    base, optimized = fig.axes[0], fig.axes[1]
    np.testing.assert_allclose(_line(base, "is").get_ydata(), [r["loss/base"] for r in _is_run() if "loss" in r])
    np.testing.assert_allclose(_line(optimized, "is").get_ydata(), [r["loss"] for r in _is_run() if "loss" in r])


def test_training_has_one_loss_panel_when_the_loss_is_unweighted():
    assert _ylabels(run_figures({"dpo": _dpo_run()})["training"]) == ["DAA loss, unweighted (loss/base)",
                                                                       "preference accuracy"]


def test_held_out_and_monitor_curves_mark_each_evaluation():
    figures = run_figures({"is": _is_run()}, gold_axis_label(["length"]))
    held_out = _line(figures["training"].axes[0], "is (held-out)")
    assert held_out.get_marker() == "o" and held_out.get_linestyle() == "--"
    assert list(held_out.get_xdata()) == [0, 3, 6]
    for ax in figures["monitor"].axes:
        assert _line(ax, "is").get_marker() == "o"
    assert _line(figures["frontier"].axes[0], "is").get_marker() == "o"


def test_gold_axes_name_the_scorer():
    figures = run_figures({"is": _is_run()}, gold_axis_label(["vader"]))
    assert "gold reward (vader)" in _ylabels(figures["monitor"])
    assert _ylabels(figures["frontier"]) == ["gold reward (vader)"]
    assert gold_axis_label([None, ""]) == "gold reward (scorer not recorded)"
    assert gold_axis_label(["vader", "length", "vader"]) == "gold reward (vader / length)"


def _run_dir(path, records, scorer):
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (path / "config.yaml").write_text(f"seed: 0\nmonitor:\n  every: 3\n  scorer: {scorer}\n", encoding="utf-8")
    return path


def test_plot_runs_reads_the_scorer_from_the_run_config(tmp_path, monkeypatch):
    one = _run_dir(tmp_path / "one", _is_run(), "length")
    two = _run_dir(tmp_path / "two", _is_run(), "vader")
    assert gold_label([one]) == "gold reward (length)"
    assert gold_label([one, two]) == "gold reward (length / vader)"
    assert gold_label([tmp_path]) == "gold reward (scorer not recorded)"  # no config.yaml
    saved = {}

    def save(fig, path):
        saved[path.name] = fig
        return real_save(fig, path)

    real_save = run_plots._save
    monkeypatch.setattr(run_plots, "_save", save)
    plot_runs([one])
    assert "gold reward (length)" in _ylabels(saved["monitor.png"])
    assert _ylabels(saved["frontier.png"]) == ["gold reward (length)"]
    assert (one / "plots" / "frontier.png").is_file()


def test_lab_style_figures_mark_points_and_take_the_gold_label():
    fig = over_steps_figure({"DPO": ([0, 50, 100], [0.1, 0.3, 0.2], [0.0, 0.2, 0.1], [0.2, 0.4, 0.3])},
                            gold_axis_label(["vader"]))
    assert _ylabels(fig) == ["gold reward (vader)"] and _line(fig.axes[0], "DPO").get_marker() == "o"
    fig = frontier_figure({"DPO": ([0.0, 1.0, 2.0], [0.1, 0.3, 0.2], None, None)})
    assert _line(fig.axes[0], "DPO").get_marker() == "o"
