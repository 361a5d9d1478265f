"""Per-example DAA (direct alignment) losses on summed sequence log-probs: the math, one function per loss.

Notation (all tensors shape (B,), one entry per preference pair):
    Δ_w = log π_θ(y_w|x) − log π_ref(y_w|x),   Δ_l likewise,   h = Δ_w − Δ_l.
Log-probs are SUMS over response tokens; lengths are response token counts |y|.

Each function's docstring names its paper and equation and states its shapes. The functions take
already-checked arguments; `preference_loss` (loss_registry.py) is the one entry point that checks them
and picks the function from the registry `LOSSES`. Non-finite inputs propagate (no check here): the
trainer decides what to do with a non-finite loss.
"""

import torch
import torch.nn.functional as F


def sigmoid_loss(h: torch.Tensor, *, beta: float, label_smoothing: float) -> torch.Tensor:
    """DPO: −log σ(βh) (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7).

    With `label_smoothing` ls ∈ [0, 0.5): (1−ls)·(−log σ(βh)) + ls·(−log σ(−βh)), the conservative
    DPO of Mitchell (2023, "A note on DPO with noisy preferences"), i.e. a Bradley–Terry likelihood
    whose labels are flipped with probability ls. ls = 0.5 is excluded: the loss would then be the
    same for either label (it would ignore the preference). h: (B,) → (B,).
    """
    loss = -F.logsigmoid(beta * h)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-beta * h)
    return loss


def ipo_loss(h: torch.Tensor, *, beta: float) -> torch.Tensor:
    """IPO: (h − 1/(2β))² (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", Eq. 17, τ = β).

    On SUMMED log-probs, as in the IS-DAA authors' code (TRL's `ipo` uses per-token means instead).
    h: (B,) → (B,).
    """
    return (h - 1.0 / (2.0 * beta)) ** 2


def hinge_loss(h: torch.Tensor, *, beta: float) -> torch.Tensor:
    """SLiC hinge: max(0, 1 − βh) (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration
    with Human Feedback", the rank calibration loss max(0, δ − log π(y_w) + log π(y_l))).

    Here on reference-normalised log-ratios as in TRL's `hinge`: max(0, 1 − βh) = β·max(0, δ − h)
    with margin δ = 1/β. h: (B,) → (B,).
    """
    return torch.relu(1.0 - beta * h)


def simpo_loss(
    chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor, *, beta: float, gamma: float
) -> torch.Tensor:
    """SimPO: −log σ(β·ℓ̄_w − β·ℓ̄_l − γ) (Meng et al. 2024, "SimPO: Simple Preference Optimization
    with a Reference-Free Reward", Eq. 6). ℓ̄ = summed policy log-prob / response length; no reference.
    (B,), (B,) → (B,).
    """
    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


def chipo_link(delta: torch.Tensor, clamp: float) -> torch.Tensor:
    """χPO link φ(Δ) = Δ + exp(Δ) (i.e. z + log z at z = e^Δ), with Δ clamped to [−clamp, clamp]
    inside the exponential only, so the linear part keeps its gradient beyond the clamp."""
    return delta + torch.exp(delta.clamp(-clamp, clamp))


def chipo_loss(
    delta_w: torch.Tensor,
    delta_l: torch.Tensor,
    *,
    beta: float,
    chipo_clamp: float,
    margin_clip: float | None,
) -> torch.Tensor:
    """χPO: −log σ(clip(β[φ(Δ_w) − φ(Δ_l)])) with φ(Δ) = Δ + e^Δ (Huang et al. 2024, "Correcting
    the Mythos of KL-Regularization: Direct Alignment without Overoptimization via Chi-Squared
    Preference Optimization", the χPO objective).

    `chipo_clamp` (default 20.0, ours): Δ is clamped to [−20, 20] before exp so that e^Δ ≤ e^20 ≈ 4.9e8
    stays finite in fp32 (e^89 already overflows). `margin_clip` (default None = off): clip the margin
    β[φ(Δ_w) − φ(Δ_l)] to [−margin_clip, margin_clip] — the paper's clip to [−2R_max, 2R_max]; the loss
    has zero gradient where the clip binds. (B,), (B,) → (B,).
    """
    margin = beta * (chipo_link(delta_w, chipo_clamp) - chipo_link(delta_l, chipo_clamp))
    if margin_clip is not None:
        margin = margin.clamp(-margin_clip, margin_clip)
    return -F.logsigmoid(margin)


def rdpo_loss(
    h: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    *,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """R-DPO: −log σ(βh + α(|y_w| − |y_l|)) (Park et al. 2024, "Disentangling Length from Quality
    in Direct Preference Optimization", Eq. 9).

    Sign: the `+` is the length-PENALISING one. It comes from solving max E[r − α|y|] − β·KL, whose
    optimum gives r = β log(π/π_ref) + α|y| + const; then σ(r_w − r_l) = σ(βh + α(|y_w| − |y_l|)).
    Effect: a pair whose chosen answer is longer already has a larger logit, so the loss pushes it
    less; a pair whose chosen answer is shorter is pushed more. (B,) ×3 → (B,).
    """
    return -F.logsigmoid(beta * h + alpha * (chosen_lengths - rejected_lengths))


def dpop_loss(h: torch.Tensor, delta_w: torch.Tensor, *, beta: float, lam: float) -> torch.Tensor:
    """DPO-Positive: −log σ(β[h − λ·max(0, −Δ_w)]) (Pal et al. 2024, "Smaug: Fixing Failure Modes of
    Preference Optimisation with DPO-Positive", Eq. 3). The penalty is active only when the chosen
    response has become less likely than under the reference. (B,), (B,) → (B,).
    """
    return -F.logsigmoid(beta * (h - lam * torch.relu(-delta_w)))
