"""`RECOMMENDED` is a valid objective section: it loads into an ObjectiveConfig and runs through the trainer's
objective dry run, and a lab method `{recommended: true}` expands to it."""

from __future__ import annotations

from isdaa.config import ObjectiveConfig
from isdaa.lab.regimes import resolve_methods
from isdaa.objectives import RECOMMENDED, WEIGHTINGS
from isdaa.training.setup import build_objective


def test_recommended_is_a_valid_objective():
    assert RECOMMENDED["weighting"] in WEIGHTINGS and RECOMMENDED["weighting"] != "none"
    build_objective(ObjectiveConfig(beta=0.01, **RECOMMENDED))


def test_lab_method_recommended_expands_and_keeps_overrides():
    (m,) = resolve_methods([{"recommended": True}])
    assert m["overrides"] == RECOMMENDED and RECOMMENDED["weighting"] in m["label"]
    (m,) = resolve_methods([{"recommended": True, "label": "ours", "is_eps": 0.5}])
    assert m["label"] == "ours" and m["overrides"] == {**RECOMMENDED, "is_eps": 0.5}
