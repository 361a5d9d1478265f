"""What the objective logs every step, as floats: statistics of a batch of importance weights (keys `weights/*`)
and the preference metrics (TRL's keys plus ours)."""

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


def preference_metrics(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    *,
    beta: float,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> dict[str, float]:
    """Batch means of implicit rewards and log-probs, computed on detached (B,) tensors.

    TRL's meaning: `rewards/chosen` = mean β·Δ_w, `rewards/rejected` = mean β·Δ_l,
    `rewards/margins` = mean β(Δ_w − Δ_l), `rewards/accuracies` = mean 1[Δ_w > Δ_l] (strict),
    `logps/chosen`, `logps/rejected` = mean summed policy log-probs. Ours: `kl/chosen` = mean Δ_w,
    `kl/rejected` = mean Δ_l (the log-ratio on the data, not a KL estimate under π_θ),
    `lengths/chosen`, `lengths/rejected` (mean token counts, only when lengths are given).
    Without a reference (None, e.g. SimPO) rewards use log π_ref ≡ 0 (β·log π_θ, as TRL's CPO/SimPO
    trainer reports) and the `kl/*` keys are left out.
    """
    beta = check_positive("beta", beta)
    check_vectors(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    pc, pr = policy_chosen_logps.detach(), policy_rejected_logps.detach()
    has_ref = ref_chosen_logps is not None and ref_rejected_logps is not None
    dw = pc - ref_chosen_logps.detach() if has_ref else pc
    dl = pr - ref_rejected_logps.detach() if has_ref else pr
    values = {
        "rewards/chosen": beta * dw.mean(),
        "rewards/rejected": beta * dl.mean(),
        "rewards/margins": beta * (dw - dl).mean(),
        "rewards/accuracies": (dw > dl).to(pc.dtype).mean(),
        "logps/chosen": pc.mean(),
        "logps/rejected": pr.mean(),
    }
    if has_ref:
        values["kl/chosen"] = dw.mean()
        values["kl/rejected"] = dl.mean()
    if chosen_lengths is not None:
        values["lengths/chosen"] = chosen_lengths.detach().to(pc.dtype).mean()
    if rejected_lengths is not None:
        values["lengths/rejected"] = rejected_lengths.detach().to(pc.dtype).mean()
    floats = torch.stack([v.to(torch.float64) for v in values.values()]).tolist()
    return dict(zip(values, floats))
