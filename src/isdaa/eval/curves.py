"""Gao et al. (2022), "Scaling Laws for Reward Model Overoptimization": gold reward as a function of
d = √KL(π‖π_ref).

    RL:          R(d) − R0 = d (α − β log d) = α·d − β·d·log d
    best-of-n:   R(d) − R0 = d (α − β d)     = α·d − β·d²

Both are linear in (α, β), so the fit is ordinary least squares (numpy `lstsq`) on the points with d > 0
(d = 0 carries no information once R0 is fixed). R0 is the gold reward at d = 0 (the reference's), given by
the caller (default 0).
"""

from __future__ import annotations

import math

import numpy as np

from isdaa.errors import InputError

__all__ = ["fit_rl", "fit_bon", "gao_rl", "gao_bon"]


def gao_rl(d, alpha: float, beta: float, r0: float = 0.0) -> np.ndarray:
    """R(d) = r0 + d(α − β log d), with R(0) = r0."""
    d = np.asarray(d, dtype=np.float64)
    safe = np.where(d > 0, d, 1.0)
    return r0 + np.where(d > 0, d * (alpha - beta * np.log(safe)), 0.0)


def gao_bon(d, alpha: float, beta: float, r0: float = 0.0) -> np.ndarray:
    """R(d) = r0 + d(α − β d)."""
    d = np.asarray(d, dtype=np.float64)
    return r0 + d * (alpha - beta * d)


def _fit(d, r, r0: float, second, name: str) -> dict:
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    r = np.asarray(r, dtype=np.float64).reshape(-1)
    if d.shape != r.shape:
        raise InputError(f"{name}: {d.size} d values for {r.size} rewards")
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(r))):
        raise InputError(f"{name}: non-finite d or reward values")
    if np.any(d < 0):
        raise InputError(f"{name}: d = sqrt(KL) must be >= 0")
    keep = d > 0
    d, r = d[keep], r[keep]
    if d.size < 2:
        raise InputError(f"{name}: need at least two points with d > 0, got {d.size}")
    design = np.stack([d, -second(d)], axis=1)
    coef, *_ = np.linalg.lstsq(design, r - r0, rcond=None)
    resid = design @ coef - (r - r0)
    return {
        "alpha": float(coef[0]),
        "beta": float(coef[1]),
        "r0": float(r0),
        "rmse": float(math.sqrt(np.mean(resid**2))),
        "n": int(d.size),
    }


def fit_rl(d, r, r0: float = 0.0) -> dict:
    """Least-squares fit of R(d) − r0 = d(α − β log d); returns alpha, beta, r0, rmse, n (points with d > 0)."""
    return _fit(d, r, r0, lambda x: x * np.log(x), "fit_rl")


def fit_bon(d, r, r0: float = 0.0) -> dict:
    """Least-squares fit of R(d) − r0 = d(α − β d); returns alpha, beta, r0, rmse, n (points with d > 0)."""
    return _fit(d, r, r0, lambda x: x * x, "fit_bon")
