"""ESS-targeted tempering of importance weights (ours; builds on Nguyen et al. 2025, arXiv 2506.08681).

The paper's pair weight is w_i = exp(c_i), c_i = min(δ_w,i + δ_l,i, 2ε). In the lab its normalised effective
sample size ESS = (Σw)²/(B·Σw²) falls to ≈ 1/B within a few hundred steps: one pair carries the batch. Tempering
interpolates between the plain DAA (α = 0, all weights 1) and the paper (α = 1):

    w_i(α) = exp(α·c_i),      α* = max{ α ∈ [0, 1] : ESS(w(α)) ≥ target }

ESS(w(α)) is non-increasing in α (d/dα log ESS = 2·(E_α[c] − E_2α[c]) ≤ 0, where E_t is the mean of c under the
softmax(t·c) tilt, which grows with t), so α* is found by bisection. With the target met, the weight keeps the
paper's direction (pairs the policy has moved away from count less) but can no longer hand the batch to a few
pairs. B = 1 or equal log weights: ESS = 1 for every α, so α* = 1. All in float64, detached.
"""

from __future__ import annotations

import math

import torch

from ._validate import ObjectiveArgumentError

BISECTION_STEPS = 40  # α* to within 2^-40
LOG_TOLERANCE = 1e-12  # equal weights give log ESS = −1e-16, not 0: a rounding error is no shortfall


def check_ess_target(target) -> float:
    """The ESS target as a float in (0, 1]; ObjectiveArgumentError("ess_target") otherwise."""
    try:
        value = float(target)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise ObjectiveArgumentError("ess_target", f"ess_target must be in (0, 1], got {target!r}")
    return value


def log_ess(log_weights: torch.Tensor) -> torch.Tensor:
    """log of the normalised ESS of w = exp(log_weights): 2·logsumexp(c) − log B − logsumexp(2c) (≤ 0)."""
    c = log_weights.detach().to(torch.float64)
    return 2.0 * torch.logsumexp(c, 0) - math.log(c.numel()) - torch.logsumexp(2.0 * c, 0)


def ess_temperature(log_weights: torch.Tensor, target: float) -> float:
    """α* = the largest α ∈ [0, 1] with ESS(exp(α·log_weights)) ≥ target (see the module docstring).

    `log_weights`: (B,) finite clipped log weights — under DDP those of the global batch, so that every process
    finds the same α."""
    target = check_ess_target(target)
    c = log_weights.detach().to(torch.float64)
    log_target = math.log(target) - LOG_TOLERANCE
    if float(log_ess(c)) >= log_target:
        return 1.0
    lo, hi = 0.0, 1.0  # ESS(lo·c) >= target > ESS(hi·c)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if float(log_ess(mid * c)) >= log_target:
            lo = mid
        else:
            hi = mid
    return lo


def normalize_to_mean_one(log_weights: torch.Tensor, over: torch.Tensor | None = None) -> torch.Tensor:
    """log(w_i / mean(w)) in log space: log_weights − (logsumexp(over) − log |over|), `over` = the batch whose
    mean divides (default `log_weights` itself; the global batch under DDP). Cannot underflow to all zeros."""
    ref = log_weights if over is None else over
    return log_weights - (torch.logsumexp(ref, 0) - math.log(ref.numel()))
