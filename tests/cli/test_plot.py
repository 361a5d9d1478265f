"""`isdaa plot` and the plots a run writes at its end: figures and summary.md of a monitored run, of a run
with no monitor, of several runs on one figure, and bad run directories refused in one line."""

from __future__ import annotations

import pytest

import isdaa
from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl
from isdaa.cli import main
from isdaa.config import TrainConfig, load_config
from isdaa.runtime import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"
BASE = ["training.png", "weights.png", "kl_data.png"]
MONITORED = BASE + ["monitor.png", "frontier.png"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tokenizer_dir, pairs_file):
    """Two finished tiny runs: `watched` (monitor with a scorer and best/, plots at the end) and `plain`
    (no monitor, `plots: false`)."""
    root = tmp_path_factory.mktemp("runs")
    eval_file = write_jsonl(root / "eval.jsonl", make_pairs(4, seed=4))
    base = {"seed": 0, "batch_size": 8, "max_steps": 4, "progress": False, "num_threads": 1,
            "model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8), "model.tokenizer": str(tokenizer_dir),
            "data.train_file": str(pairs_file), "data.eval_file": str(eval_file), "data.max_length": 32,
            "data.max_prompt_length": 16, "optim.lr": 1e-3, "eval_every": 2}
    watched = {"output_dir": str(root / "watched"), "monitor.every": 2, "monitor.n_samples": 2,
               "monitor.max_new_tokens": 6, "monitor.scorer": "length", "monitor.keep_best": True}
    plain = {"output_dir": str(root / "plain"), "plots": False}
    for extra in (watched, plain):
        isdaa.train(load_config(TrainConfig, None, {**base, **extra}))
    return root / "watched", root / "plain"


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_a_monitored_run_plots_itself(runs):
    watched, _ = runs
    assert sorted(p.name for p in (watched / "plots").iterdir()) == sorted(MONITORED)
    assert all(_is_png(watched / "plots" / name) for name in MONITORED)
    summary = (watched / "summary.md").read_text()
    for name in MONITORED:
        assert f"(plots/{name})" in summary
    last = [m for m in read_metrics(watched) if "monitor/kl_k3" in m][-1]
    assert f"{last['monitor/kl_k3']:.4g} ± {last['monitor/kl_k3_se']:.2g}" in summary
    loss = [m["loss"] for m in read_metrics(watched) if "loss" in m][-1]
    assert f"| watched | 4 | {loss:.4g} |" in summary and "best/" in summary and "step " in summary


def test_plot_command_on_a_run_with_no_monitor(runs, capsys):
    _, plain = runs
    assert not (plain / "plots").exists()  # plots: false
    assert main(["plot", str(plain)]) == 0
    assert "3 figures" in capsys.readouterr().out
    assert sorted(p.name for p in (plain / "plots").iterdir()) == sorted(BASE)
    assert all(_is_png(plain / "plots" / name) for name in BASE)
    row = next(line for line in (plain / "summary.md").read_text().splitlines() if line.startswith("| plain"))
    assert row.endswith("| – | – | – | – |")  # no sampled KL, gold, best/ or early stop


def test_several_runs_on_one_figure(runs, tmp_path):
    watched, plain = runs
    out = tmp_path / "compare"
    assert main(["plot", str(watched), str(plain), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(MONITORED + ["summary.md"])
    summary = (out / "summary.md").read_text()
    assert "(training.png)" in summary
    assert "# 2 runs" in summary and "| watched |" in summary and "| plain |" in summary


@pytest.mark.parametrize("args, expected", [
    ([], "expected at least one run directory"),
    (["MISSING"], "no metrics.jsonl"),
    (["RUN", "--colour", "red"], "unknown option '--colour'"),
])
def test_bad_run_directories(runs, tmp_path, capsys, args, expected):
    watched, _ = runs
    before = sorted(p.relative_to(watched) for p in watched.rglob("*"))
    argv = ["plot"] + [str(tmp_path / "missing") if a == "MISSING" else str(watched) if a == "RUN" else a for a in args]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "missing").exists() and sorted(p.relative_to(watched) for p in watched.rglob("*")) == before
