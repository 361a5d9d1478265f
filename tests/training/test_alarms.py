"""Warnings about an importance weighting that underflows (a no-op run) or sits at its clip (saturated)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_pairs, write_jsonl

from isdaa.config import ObjectiveConfig
from isdaa.eval.monitor import EssAlarm
from isdaa.objectives.metrics import effective_sample_size
from isdaa.runtime import read_metrics
from isdaa.training.alarms import WeightAlarms, alarm_patience
from isdaa.training.trainer import fit


def _step(mean=1.0, clipped=0.0, ess=1.0):
    return {"loss": 1e-10, "loss/base": 0.69, "weights/mean": mean, "weights/clipped_frac": clipped,
            "weights/ess": ess, "weights/raw_log_mean": -26.0}


def test_patience_is_ten_logged_steps_or_a_fifth_of_a_short_run():
    assert alarm_patience(1000, 1) == 10 and alarm_patience(1000, 50) == 4
    assert alarm_patience(20, 1) == 4 and alarm_patience(3, 1) == 2


def test_each_condition_warns_once_after_patience_steps():
    alarms = WeightAlarms(ObjectiveConfig(weighting="is"), patience=3)
    assert alarms.observe(1, _step(mean=1e-11)) == [] and alarms.observe(2, _step(mean=1e-11)) == []
    assert alarms.observe(3, _step(mean=2.0)) == []  # the streak is broken
    fired = [alarms.observe(s, _step(mean=1e-11)) for s in (4, 5, 6, 7, 8)]
    assert [len(f) for f in fired] == [0, 0, 1, 0, 0]
    key, message = fired[2][0]
    assert key == "warning/weights_underflow"
    assert message.startswith("step 6: weights/mean 1e-11 has stayed below 0.001 for 3 logged steps (loss 1e-10, "
                              "unweighted loss/base 0.69, raw log weight mean -26)")
    saturated = [alarms.observe(s, _step(clipped=1.0)) for s in (9, 10, 11)][-1]
    assert [k for k, _ in saturated] == ["warning/weights_saturated"]
    assert saturated[0][1].startswith("step 11: weights/clipped_frac 1.00 has stayed above 0.9 for 3 logged steps: "
                                      "nearly every pair's weight sits at the clip (7.39)")


def test_equal_tiny_weights_have_ess_one_so_only_this_alarm_sees_them():
    """The ESS alarm's statistic is scale-free: all weights e^-26 give ESS 1, the underflow warning still fires."""
    ess = float(effective_sample_size(torch.full((8,), torch.exp(torch.tensor(-26.0)).item())))
    assert ess == pytest.approx(1.0)
    ess_alarm, alarms = EssAlarm(0.1, 2), WeightAlarms(ObjectiveConfig(weighting="is"), patience=2)
    steps = [_step(mean=5e-12, ess=ess) for _ in range(3)]
    assert [ess_alarm.observe(s, m) for s, m in enumerate(steps, 1)] == [None] * 3
    assert sum(len(alarms.observe(s, m)) for s, m in enumerate(steps, 1)) == 1


def test_no_weighting_is_not_watched_and_skipped_steps_are_no_evidence():
    assert WeightAlarms(ObjectiveConfig(weighting="none"), patience=1).observe(1, _step(clipped=1.0)) == []
    alarms = WeightAlarms(ObjectiveConfig(weighting="is"), patience=2)
    alarms.observe(1, _step(mean=1e-9))
    assert alarms.observe(2, {"weights/mean": "nan", "weights/clipped_frac": "nan"}) == []
    assert len(alarms.observe(3, _step(mean=1e-9))) == 1


def test_a_resumed_run_does_not_warn_again():
    alarms = WeightAlarms(ObjectiveConfig(weighting="is"), patience=2)
    alarms.replay([{"step": 1, **_step(mean=1e-9)}, {"step": 2, **_step(mean=1e-9)},
                   {"step": 2, "warning/weights_underflow": "..."}, {"step": 3, **_step(clipped=0.95)}])
    # underflow was warned about before the resume; the saturation streak (step 3) goes on
    assert [k for k, _ in alarms.observe(4, _step(mean=1e-9, clipped=0.95))] == ["warning/weights_saturated"]


@pytest.mark.parametrize("behaviour_logp, condition", [(-0.01, "weights_underflow"), (-60.0, "weights_saturated")])
def test_a_run_warns_on_stderr_and_in_metrics(tiny_config, tmp_path, capsys, behaviour_logp, condition):
    """Behaviour log-probs far above the policy's give weights ~e^-30 (a no-op run); far below, every weight
    at the clip. Either way the run warns once, at step 2 of a 10-step run (patience: a fifth of 10 steps)."""
    rows = [dict(r, behavior_chosen_logps=behaviour_logp, behavior_rejected_logps=behaviour_logp)
            for r in make_pairs(64)]
    data = write_jsonl(tmp_path / "far.jsonl", rows)
    cfg = tiny_config(max_steps=10, **{"data.train_file": str(data), "objective.weighting": "is"})
    fit(cfg)
    err = capsys.readouterr().err
    records = read_metrics(cfg.output_dir)
    warnings = [r for r in records if any(k.startswith("warning/") for k in r)]
    assert [(r["step"], list(r)[1]) for r in warnings] == [(2, f"warning/{condition}")]
    assert err.count("isdaa: warning: step 2: weights/") == 1 and warnings[0][f"warning/{condition}"] in err
    json.dumps(warnings)  # plain JSON
