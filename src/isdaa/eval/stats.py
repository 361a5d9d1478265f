"""Small statistics shared by the evaluator and the lab: the mean and its standard error, and the t quantile
of a 95% confidence interval over a few seeds.

- `mean_se(values, groups)`: plain SE = sd (ddof 1) / √n, or — with `groups` (e.g. the prompt index when
  several completions are drawn per prompt) — the SE over group means, which accounts for the correlation of
  samples that share a prompt. The mean itself is the plain sample mean in both cases.
- `finite_mean_se(values)`: the same over the finite values only (None and NaN skipped), with their count —
  what a summary over seeds needs when some runs lack a number; `is_finite_number(value)`: one metric's test.
Non-finite results are NaN here; `isdaa.runtime.json_ready` turns them into JSON null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_se", "finite_mean_se", "is_finite_number", "t_quantile"]


def mean_se(values, groups: Sequence | None = None) -> tuple[float, float]:
    """(mean, standard error of the mean) of `values`.

    Without `groups`: SE = sample std (ddof 1) / √n. With `groups` (one label per value): the mean is still
    the plain mean over values, and the SE is that of the mean of the per-group means (exactly the same
    mean when every group has the same size), i.e. samples in one group are treated as one cluster.
    SE is NaN when fewer than two values (or groups) are available; the mean is NaN for no values.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    if groups is not None:
        labels = np.asarray(groups).reshape(-1)
        if labels.size != arr.size:
            raise ValueError(f"groups has {labels.size} labels for {arr.size} values")
        _, inverse = np.unique(labels, return_inverse=True)
        sums = np.bincount(inverse, weights=arr)
        counts = np.bincount(inverse)
        arr = sums / counts
    if arr.size < 2:
        return mean, math.nan
    return mean, float(arr.std(ddof=1) / math.sqrt(arr.size))


def is_finite_number(value) -> bool:
    """Whether `value` is a finite int or float (not None, not a bool, not NaN or ±inf): a metric worth
    reporting or plotting."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_mean_se(values) -> tuple[float, float, int]:
    """(mean, SE, n) over the finite entries of `values` (None, NaN and ±inf are left out); (NaN, NaN, 0)
    when none is finite, SE NaN when only one is."""
    finite = [x for x in values if x is not None and np.isfinite(x)]
    mean, se = mean_se(finite)
    return mean, se, len(finite)


# 97.5% quantiles of Student's t by degrees of freedom (a df between two keys takes the lower key's value)
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13,
         20: 2.09, 30: 2.04}


def t_quantile(n: int) -> float:
    """97.5% quantile of Student's t with n − 1 degrees of freedom (the 95% CI of a mean of n seeds)."""
    df = max(int(n) - 1, 1)
    keys = [k for k in sorted(_T975) if k <= df]
    return _T975[keys[-1]] if df <= 30 else 1.96
