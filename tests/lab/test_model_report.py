"""The real-model report's table of every method at its gold peak and at its end (`isdaa.lab.model_report`), on a
synthetic results dict: the peak is the step of the highest seed-mean gold, the numbers are seed means, and each
sample is the first seed's completion alone, under the prompt they answer."""

from __future__ import annotations

from isdaa.lab.model_report import methods_table


def _eval(step, gold, finished, text):
    return {"step": step, "gold": gold, "proxy": 0.0, "kl_k3": step / 10, "length": 20.0, "finished": finished,
            "examples": [f"Tell a story: -> {text}"]}


def _run(method, seed, golds, text):
    return {"regime": "r", "beta": 0.05, "method": method, "seed": seed,
            "evals": [_eval(10 * i, g, 1.0 - i / 4, f"{text} at {10 * i}") for i, g in enumerate(golds)]}


def test_peak_is_the_seed_mean_maximum_and_samples_are_completions():
    results = {"methods": [{"label": "A"}, {"label": "B"}, {"label": "C"}],
               "runs": [_run("A", 0, [0.0, 0.9, 0.1, 0.0], "a0"), _run("A", 1, [0.0, 0.1, 0.5, -0.2], "a1"),
                        _run("B", 0, [0.0, 0.1, 0.2, 0.3], "b0")]}
    lines = methods_table(results, "r", 0.05)
    assert lines[0] == "Each sample answers the first held-out prompt, `Tell a story:`, in the first seed's run."
    rows = [line for line in lines if line.startswith("| A") or line.startswith("| B") or line.startswith("| |")]
    # A: seed means 0.0, 0.5, 0.3, -0.1 -> peak at step 10 (one seed's 0.9 alone would not decide it)
    assert rows[0].startswith("| A | peak (step 10) | 0.500 |") and "| 75% | `a0 at 10` |" in rows[0]
    assert rows[1].startswith("| | end (step 30) | -0.100 |") and rows[1].endswith("`a0 at 30` |")
    assert rows[2].startswith("| B | peak (step 30) | 0.300 |") and rows[3].startswith("| | end (step 30) | 0.300 |")
    assert len(rows) == 4  # C has no runs: no row


def test_no_runs_no_table():
    assert methods_table({"methods": [{"label": "A"}], "runs": []}, "r", 0.05) == []
