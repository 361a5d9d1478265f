"""`RECOMMENDED` is a valid objective section: it loads into an ObjectiveConfig and runs through the trainer's
objective dry run, a lab method `{recommended: true}` expands to it, and it is what the pre-registered rule picked
in the committed comparison (docs/results/objectives/summary.json, written by `isdaa lab compare --rule objectives`)."""

from __future__ import annotations

import json
from pathlib import Path

from isdaa.config import ObjectiveConfig
from isdaa.lab.objective_rule import CANDIDATES
from isdaa.lab.regimes import resolve_methods
from isdaa.objectives import RECOMMENDED, WEIGHTINGS
from isdaa.training.setup import build_objective

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def test_recommended_is_a_valid_objective():
    assert RECOMMENDED["weighting"] in WEIGHTINGS
    build_objective(ObjectiveConfig(beta=0.01, **RECOMMENDED))


def test_recommended_is_the_rules_pick():
    """The second rule's pick once it is applied (every candidate's 3 real-model seeds); the first rule's before."""
    rule = json.loads((RESULTS / "objectives" / "summary.json").read_text(encoding="utf-8"))["rule"]
    if rule["applied"]:
        (loss, weighting), = [k for k, name in CANDIDATES.items() if name == rule["recommended"]]
        assert (RECOMMENDED["loss"], RECOMMENDED["weighting"]) == (loss, weighting)
        assert RECOMMENDED.get("is_eps", 1.0) == 1.0 and RECOMMENDED.get("is_ess_target", 0.5) == 0.5
    else:
        first = json.loads((RESULTS / "worlds" / "summary.json").read_text(encoding="utf-8"))["rule"]["overrides"]
        assert {k: RECOMMENDED[k] for k in first} == first


def test_lab_method_recommended_expands_and_keeps_overrides():
    (m,) = resolve_methods([{"recommended": True}])
    assert m["overrides"] == RECOMMENDED and m["label"].startswith(f"recommended ({RECOMMENDED['loss']}")
    assert (RECOMMENDED["weighting"] in m["label"]) == (RECOMMENDED["weighting"] != "none")
    (m,) = resolve_methods([{"recommended": True, "label": "ours", "is_eps": 0.5}])
    assert m["label"] == "ours" and m["overrides"] == {**RECOMMENDED, "is_eps": 0.5}
