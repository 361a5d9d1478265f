"""Statistics of a batch of importance weights, logged every step (keys `weights/*`)."""

import torch

from ._validate import check_positive, check_vectors


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """Normalised ESS = (Σw)² / (n·Σw²) ∈ (0, 1] as a 0-d float64 tensor; 1 when all weights are
    equal, ≈ 1/n when one weight dominates; defined as 0 when Σw² = 0 (all weights zero)."""
    w = weights.detach().to(torch.float64)
    sq = (w * w).sum()
    ess = w.sum() ** 2 / (w.numel() * sq)
    return torch.where(sq > 0, ess, torch.zeros_like(ess))


def weight_stats(
    weights: torch.Tensor,
    raw_log_weights: torch.Tensor,
    *,
    eps: float,
    clip_log_max: float | None = None,
) -> dict[str, float]:
    """Summary of weights (B,) and their raw, pre-clip log weights (B,), as floats.

    Keys: `weights/mean`, `weights/min`, `weights/max`, `weights/ess` (see `effective_sample_size`),
    `weights/clipped_frac` (share of raw log weights above the upper clip, 2ε unless `clip_log_max`
    says otherwise — e.g. 0 for WPO), `weights/raw_log_mean`.
    """
    eps = check_positive("eps", eps)
    check_vectors(weights=weights, raw_log_weights=raw_log_weights)
    upper = 2.0 * eps if clip_log_max is None else float(clip_log_max)
    w = weights.detach().to(torch.float64)
    raw = raw_log_weights.detach().to(torch.float64)
    values = torch.stack(
        [
            w.mean(),
            w.min(),
            w.max(),
            effective_sample_size(w),
            (raw > upper).to(torch.float64).mean(),
            raw.mean(),
        ]
    ).tolist()
    keys = ("mean", "min", "max", "ess", "clipped_frac", "raw_log_mean")
    return {f"weights/{k}": v for k, v in zip(keys, values)}
