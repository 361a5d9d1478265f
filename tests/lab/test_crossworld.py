"""The cross-world comparison applies docs/results/RULE.md as written: collapses disqualify, ranks by the
frontier score per cell, the lowest mean rank wins (ties: higher mean final gold); the bar is checked per cell."""

from __future__ import annotations

import json

import pytest

from isdaa.lab.crossworld import apply_rule, bar_check, load_cells, recommended_label, write_comparison
from isdaa.lab.summary import best_within

REF_GOLD = 1.0
METHODS = [{"label": "DPO", "overrides": {"loss": "sigmoid"}},
           {"label": "chiPO", "overrides": {"loss": "chipo"}},
           {"label": "IS-A", "overrides": {"loss": "sigmoid", "weighting": "is"}},
           {"label": "IS-B", "overrides": {"loss": "sigmoid", "weighting": "is_ess"}},
           {"label": "IS-C", "overrides": {"loss": "ipo", "weighting": "is_curv"}}]


def _evals(curve):
    return [{"step": 10 * i, "gold": g, "kl_k3": k, "length": 3.0} for i, (g, k) in enumerate(curve)]


# method -> per-seed (gold, KL) curves; IS-A has the best frontier but collapses in seed 1 of the second world
CURVES = {
    "DPO": [[(1.0, 0.0), (2.0, 2.0), (0.5, 30.0)]] * 2,
    "chiPO": [[(1.0, 0.0), (1.8, 1.0), (1.9, 3.0)]] * 2,
    "IS-A": [[(1.0, 0.0), (2.5, 0.5), (2.4, 1.0)]] * 2,
    "IS-B": [[(1.0, 0.0), (2.2, 1.0), (2.1, 2.0)]] * 2,
    "IS-C": [[(1.0, 0.0), (1.5, 1.0), (1.4, 2.0)]] * 2,
}


def _results(kind: str, curves: dict) -> dict:
    runs = [{"regime": "few_pairs", "method": m, "beta": 0.01, "seed": s, "status": "ok", "evals": _evals(c)}
            for m, per_seed in curves.items() for s, c in enumerate(per_seed)]
    return {"config": {"world": {"kind": kind}, "common_sqrt_kl": 0.0}, "reference_gold": {"gold": REF_GOLD},
            "methods": METHODS, "runs": runs}


@pytest.fixture
def two_worlds(tmp_path):
    collapsing = dict(CURVES, **{"IS-A": [CURVES["IS-A"][0], [(1.0, 0.0), (2.5, 0.5), (0.2, 9.0)]]})
    dirs = []
    for kind, curves in (("topics", CURVES), ("junk", collapsing)):
        d = tmp_path / kind
        d.mkdir()
        (d / "results.json").write_text(json.dumps(_results(kind, curves)))
        dirs.append(d)
    return dirs


def test_best_within_is_the_kl_constrained_maximum():
    import numpy as np

    d, g = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 5.0])
    assert best_within(d, g, 0.5) == 1.0 and best_within(d, g, 2.5) == 3.0 and best_within(d, g, 9) == 5.0


def test_collapse_disqualifies_and_the_lowest_mean_rank_wins(two_worlds):
    study = load_cells(two_worlds)
    rule = apply_rule(study.cells, study.methods)
    assert rule["candidates"] == ["IS-A", "IS-B", "IS-C"]  # comparators are not candidates
    assert rule["collapses"] == {"IS-A": 1, "IS-B": 0, "IS-C": 0}
    assert rule["eligible"] == ["IS-B", "IS-C"]
    assert rule["mean_rank"] == {"IS-B": 1.0, "IS-C": 2.0}
    assert rule["recommended"] == "IS-B" and rule["overrides"]["weighting"] == "is_ess"


def test_when_every_candidate_collapses_the_fewest_collapses_stay(two_worlds, tmp_path):
    bad = {m: [c[0], [(1.0, 0.0), (2.0, 1.0), (0.1, 9.0)]] if m.startswith("IS-") and m != "IS-C" else c
           for m, c in CURVES.items()}
    bad["IS-C"] = [[(1.0, 0.0), (1.5, 1.0), (0.1, 9.0)]] * 2  # collapses twice
    d = tmp_path / "behavior"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(_results("behavior", bad)))
    study = load_cells([d])
    rule = apply_rule(study.cells, study.methods)
    assert rule["collapses"] == {"IS-A": 1, "IS-B": 1, "IS-C": 2}
    assert rule["eligible"] == ["IS-A", "IS-B"]
    assert rule["recommended"] == "IS-A"  # the higher frontier score of the two


def test_equal_scores_share_ranks_and_the_final_gold_breaks_the_tie(tmp_path):
    tied = dict(CURVES)
    tied["IS-A"] = [[(1.0, 0.0), (2.5, 0.5), (0.2, 9.0)]] * 2  # collapses: out
    tied["IS-C"] = [[(1.0, 0.0), (2.2, 1.0), (2.15, 2.0)]] * 2  # same frontier as IS-B (best 2.2 everywhere) ...
    d = tmp_path / "w"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(_results("topics", tied)))
    study = load_cells([d])
    rule = apply_rule(study.cells, study.methods)
    ranks = rule["ranks"]["topics beta=0.01"]
    assert ranks["IS-B"] == ranks["IS-C"]
    assert rule["recommended"] == "IS-C"  # ... and a higher final gold (2.15 vs 2.1)


def test_bar_check_and_report(two_worlds, tmp_path):
    cells = load_cells(two_worlds).cells
    checks = bar_check(cells, "IS-B")
    topics = checks["topics beta=0.01"]
    # IS-B: constrained best ≥ DPO's everywhere (2.2 ≥ 2.0 from √KL = 1 on), best 2.2 ≥ 2.0, final 2.1 ≥ 0.95·2.2
    assert topics == {"frontier >= DPO": True, "best >= DPO best - 1 SE": True, "final within 5% of best": True,
                      "no collapse": True}
    assert bar_check(cells, "IS-C")["topics beta=0.01"]["best >= DPO best - 1 SE"] is False  # 1.5 < 2.0
    path = write_comparison(two_worlds, tmp_path / "out")
    text = path.read_text()
    assert "**Recommended: IS-B**" in text and "Cross-world summary" in text
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rule"]["recommended"] == "IS-B"
    assert "Provisional" not in text
    saved = json.loads((two_worlds[0] / "results.json").read_text())
    (two_worlds[0] / "results.json").write_text(json.dumps(dict(saved, missing_runs=2)))  # a sweep still running
    assert "**Provisional: 2 runs of the design are not done yet.**" in write_comparison(two_worlds, tmp_path / "o2").read_text()


def test_compare_command_errors_are_one_line(tmp_path, capsys):
    from isdaa.cli import main

    assert main(["lab", "compare", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["lab", "compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0]


def test_recommended_label_is_the_method_with_recommendeds_objective():
    """RECOMMENDED (χPO, no weighting) is found under any label, its omitted keys at their defaults."""
    from isdaa.objectives import RECOMMENDED

    methods = {"DPO": {"loss": "sigmoid"}, "IS": {"loss": RECOMMENDED["loss"], "weighting": "is"},
               "mine": {"loss": RECOMMENDED["loss"]}}
    assert recommended_label(methods) == ("mine" if RECOMMENDED["weighting"] == "none" else None)


def test_supplementary_runs_get_the_tables_and_the_recommendation_but_no_rule(tmp_path, capsys, monkeypatch):
    """`--supplementary --regime one_pass`: runs outside the rule's design (another regime) are tabled, the run of
    `RECOMMENDED` (here a weighting of DPO, so that it is none of the comparators) is compared with DPO, IPO and
    χPO, and no rule is applied (nothing is "recommended" from them)."""
    from isdaa.cli import main

    recommended = {"loss": "sigmoid", "weighting": "is_ess", "is_eps": 1.0, "hparams": {}}
    monkeypatch.setattr("isdaa.lab.crossworld.RECOMMENDED", recommended)
    methods = [*METHODS[:2], {"label": "recommended", "overrides": dict(recommended)}]
    curves = {"DPO": CURVES["DPO"], "chiPO": CURVES["chiPO"], "recommended": CURVES["IS-B"]}
    dirs = []
    for kind in ("topics", "junk"):
        results = dict(_results(kind, curves), methods=methods)
        for run in results["runs"]:
            run["regime"] = "one_pass"
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "results.json").write_text(json.dumps(results))
        dirs.append(str(tmp_path / kind))
    assert main(["lab", "compare", *dirs, "--out", str(tmp_path / "few")]) == 2  # no few_pairs runs there
    assert "no few_pairs results" in capsys.readouterr().err
    assert main(["lab", "compare", *dirs, "--out", str(tmp_path / "o"), "--regime", "one_pass", "--supplementary"]) == 0
    text = (tmp_path / "o" / "summary.md").read_text()
    assert text.startswith("# Supplementary runs") and "the one_pass regime" in text and "## No rule here" in text
    assert "**Recommended:" not in text and json.loads((tmp_path / "o" / "summary.json").read_text())["rule"] is None
    assert "| recommended | " in text
    assert recommended_label({m["label"]: m["overrides"] for m in methods}) == "recommended"  # not DPO (sigmoid)
    assert "- junk β=0.01: DPO: frontier 2.03 vs 1.71" in text  # the recommendation (IS-B's curve) vs DPO


def test_the_recommendation_is_not_compared_with_itself():
    """When RECOMMENDED is one of the comparators (χPO), its lines compare it with the other two only."""
    from isdaa.lab.crossworld import _versus_lines

    row = {"frontier_score": 1.0, "final_gold": (1.0, 0.1, 3), "collapsed": 0, "n_seeds": 3}
    cells = {("topics", 0.01): {"methods": {"DPO": row, "IPO": row, "chiPO": row}}}
    (line,) = [x for x in _versus_lines(cells, "chiPO") if x.startswith("- topics")]
    assert "DPO: frontier" in line and "IPO: frontier" in line and "chiPO: frontier" not in line
