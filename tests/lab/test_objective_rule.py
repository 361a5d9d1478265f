"""The second selection rule (docs/results/RULE-objectives.md, isdaa.lab.objective_rule): by hand on synthetic
cells, and a committed report's results.csv read back into the same summaries as its results.json."""

import csv
import json

import pytest
import yaml

from isdaa.errors import InputError
from isdaa.lab.objective_rule import CANDIDATES, apply_objective_rule, load_objective_cells

NAMES = list(CANDIDATES.values())


def _row(frontier, final=1.0, collapsed=0, n=3):
    return {"frontier_score": frontier, "final_gold": (final, 0.0), "best_gold": (final, 0.0), "collapsed": collapsed,
            "n_seeds": n}


def _cells(controlled: dict, model: dict) -> dict:
    cells = {("w", float(b)): {"methods": {n: _row(s) for n, s in zip(NAMES, scores)}, "model": False}
             for b, scores in controlled.items()}
    cells[("model", 0.05)] = {"methods": {n: _row(s, **model.get(n, {})) for n, s in zip(NAMES, model["scores"])},
                              "model": True}
    return cells


def test_the_real_model_weighs_as_much_as_every_controlled_cell():
    # χPO (index 2) is first in both controlled cells and 6th on the real model; IS-IPO ess (index 6) first on the
    # real model and second elsewhere
    controlled = {0.01: [1, 2, 9, 3, 4, 5, 8, 6], 0.05: [1, 2, 9, 3, 4, 5, 8, 6]}
    cells = _cells(controlled, {"scores": [1, 2, 3, 4, 5, 6, 9, 7]})
    rule = apply_objective_rule(cells)
    assert rule["applied"] and rule["score"]["χPO"] == pytest.approx(0.5 * 1 + 0.5 * 6)
    assert rule["score"]["IS-IPO ess"] == pytest.approx(0.5 * 2 + 0.5 * 1) and rule["recommended"] == "IS-IPO ess"


def test_a_collapse_anywhere_disqualifies_and_an_incomplete_cell_stops_the_rule():
    cells = _cells({0.01: [1, 2, 9, 3, 4, 5, 8, 6]}, {"scores": [1, 2, 9, 4, 5, 6, 3, 7]})
    cells[("model", 0.05)]["methods"]["χPO"]["collapsed"] = 1
    rule = apply_objective_rule(cells)
    # χPO out; χPO + IS: 2nd in the controlled cell, 1st on the real model -> 1.5; IS-IPO ess: 1st and 5th -> 3
    assert "χPO" not in rule["eligible"] and rule["recommended"] == "χPO + IS eps=1"
    assert rule["score"]["IS-IPO ess"] == pytest.approx(3.0)
    cells[("model", 0.05)]["methods"]["IPO"]["n_seeds"] = 2
    del cells[("w", 0.01)]["methods"]["χPO + IS eps=1"]
    rule = apply_objective_rule(cells)
    assert not rule["applied"] and rule["recommended"] is None
    assert rule["missing"] == ["χPO + IS eps=1 in w β=0.01", "IPO: 2 of 3 seeds in the model world"]


def _results(methods, ref_gold=0.5):
    runs = [{"regime": "few_pairs", "method": m["label"], "beta": 0.01, "seed": s, "status": "ok",
             "evals": [{"step": t, "gold": g + 0.1 * s, "kl_k3": k, "sqrt_kl": k ** 0.5, "length": 3.0, "ess_min": None}
                       for t, g, k in ((0, 0.5, 0.0), (10, 0.9 + i, 1.0), (20, 0.4, 4.0))]}
            for i, m in enumerate(methods) for s in range(2)]
    return {"config": {"world": {"kind": "topics"}, "methods": [{"label": m["label"], **m["overrides"]}
                                                                 for m in methods]},
            "methods": methods, "reference_gold": {"gold": ref_gold}, "runs": runs}


def test_a_report_without_results_json_reads_the_same_from_its_csv(tmp_path):
    methods = [{"label": "DPO", "overrides": {"loss": "sigmoid"}},
               {"label": "chiPO", "overrides": {"loss": "chipo"}},
               {"label": "RPO", "overrides": {"loss": "sigmoid", "sft_eta": 1.0}}]  # not a candidate: left out
    results = _results(methods)
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "results.json").write_text(json.dumps(results))
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "lab.yaml").write_text(yaml.safe_dump(results["config"], allow_unicode=True))
    (csv_dir / "reference_gold.json").write_text(json.dumps({"gold": 0.5}))
    with open(csv_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["regime", "method", "beta", "seed", "step", "gold", "kl_k3", "sqrt_kl", "length", "ess_min", "status"])
        for r in results["runs"]:
            for e in r["evals"]:
                w.writerow([r["regime"], r["method"], r["beta"], r["seed"], e["step"], e["gold"], e["kl_k3"],
                            e["sqrt_kl"], e["length"], "", r["status"]])
    from_json, from_csv = load_objective_cells([tmp_path / "json"]), load_objective_cells([csv_dir])
    assert set(from_json[("topics", 0.01)]["methods"]) == {"DPO", "χPO"}
    for name in ("DPO", "χPO"):
        a, b = from_json[("topics", 0.01)]["methods"][name], from_csv[("topics", 0.01)]["methods"][name]
        assert a["frontier_score"] == pytest.approx(b["frontier_score"]) and a["final_gold"] == b["final_gold"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text(json.dumps(_results(methods[:1], ref_gold=0.7)))
    with pytest.raises(InputError, match="not the same preparation"):
        load_objective_cells([tmp_path / "json", tmp_path / "other"])
