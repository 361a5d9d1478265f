"""Win rate of policy samples against a baseline response, judged by a gold scorer.

Each sample wins (1) when its gold score is strictly above its baseline's, ties count ½, losses 0 — the
authors' evaluation with the dataset's chosen response (or a reference-model sample) as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isdaa.eval.stats import mean_se

__all__ = ["win_outcomes", "win_rate"]


def win_outcomes(scores: Sequence[float], baseline_scores: Sequence[float]) -> np.ndarray:
    """Per-sample outcome in {0, 0.5, 1}: score > baseline → 1, equal → 0.5, below → 0."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    b = np.asarray(baseline_scores, dtype=np.float64).reshape(-1)
    if s.shape != b.shape:
        raise ValueError(f"{s.size} scores for {b.size} baseline scores")
    return (s > b).astype(np.float64) + 0.5 * (s == b)


def win_rate(
    scores: Sequence[float], baseline_scores: Sequence[float], *, groups: Sequence | None = None
) -> tuple[float, float]:
    """(win rate, its standard error); `groups` (e.g. prompt index) makes the SE cluster by prompt."""
    return mean_se(win_outcomes(scores, baseline_scores), groups)
