"""Statistics of a batch of importance weights (`weights/*` keys, ESS)."""

import pytest
from objective_cases import t

from isdaa.objectives import effective_sample_size, weight_stats


def test_weight_stats_hand_example():
    s = weight_stats(t(1.0, 1.0, 2.0, 0.0), t(0.0, 2.5, 2.0, -4.0), eps=1.0)
    assert set(s) == {"weights/mean", "weights/min", "weights/max", "weights/ess", "weights/clipped_frac",
                      "weights/raw_log_mean"}
    assert s["weights/mean"] == 1.0 and s["weights/min"] == 0.0 and s["weights/max"] == 2.0
    assert s["weights/ess"] == pytest.approx(16.0 / (4 * 6.0))  # (Σw)² / (n Σw²)
    assert s["weights/clipped_frac"] == 0.25  # only 2.5 > 2ε; exactly 2ε is not clipped
    assert s["weights/raw_log_mean"] == pytest.approx(0.125)
    assert weight_stats(t(1.0), t(2.5), eps=1.0, clip_log_max=3.0)["weights/clipped_frac"] == 0.0


def test_ess_limits():
    assert effective_sample_size(t(3.0, 3.0, 3.0)).item() == pytest.approx(1.0)
    assert effective_sample_size(t(0.0, 0.0)).item() == 0.0
    assert effective_sample_size(t(1.0, 0.0, 0.0, 0.0)).item() == pytest.approx(0.25)
