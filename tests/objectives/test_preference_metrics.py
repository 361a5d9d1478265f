"""TRL-style preference metrics (`rewards/*`, `logps/*`, `kl/*`, `lengths/*`)."""

import pytest
from objective_cases import batch, t

from isdaa.objectives import preference_metrics


def test_preference_metrics_values():
    b = batch()
    m = preference_metrics(*(b[k] for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
                                             "ref_rejected_logps")), beta=0.1,
                           chosen_lengths=b["chosen_lengths"], rejected_lengths=b["rejected_lengths"])
    assert m["rewards/chosen"] == pytest.approx(0.1 * (0.5 - 1.0) / 2)
    assert m["rewards/rejected"] == pytest.approx(0.1 * (-1.0 + 0.5) / 2)
    assert m["rewards/margins"] == pytest.approx(0.1 * (1.5 - 1.5) / 2, abs=1e-15)
    assert m["rewards/accuracies"] == 0.5
    assert m["logps/chosen"] == -15.0 and m["logps/rejected"] == -15.25
    assert m["kl/chosen"] == pytest.approx(-0.25) and m["kl/rejected"] == pytest.approx(-0.25)
    assert m["lengths/chosen"] == 6.5 and m["lengths/rejected"] == 5.0


def test_accuracy_is_strict_and_reference_free_metrics():
    m = preference_metrics(t(-1.0), t(-1.0), t(-2.0), t(-2.0), beta=0.1)
    assert m["rewards/accuracies"] == 0.0  # a tie is not a win
    assert "lengths/chosen" not in m
    m = preference_metrics(t(-1.0), t(-3.0), None, None, beta=2.0)
    assert m["rewards/chosen"] == -2.0 and m["rewards/accuracies"] == 1.0 and "kl/chosen" not in m
