"""Per-batch training metrics of a preference objective (TRL's keys plus ours), as floats."""

import torch

from ._validate import check_positive, check_vectors


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
