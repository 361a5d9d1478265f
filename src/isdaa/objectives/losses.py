"""Per-example DAA (direct alignment) losses on summed sequence log-probs.

Notation (all tensors shape (B,), one entry per preference pair):
    Δ_w = log π_θ(y_w|x) − log π_ref(y_w|x),   Δ_l likewise,   h = Δ_w − Δ_l.
Log-probs are SUMS over response tokens; lengths are response token counts |y|.

`preference_loss(kind, ...)` is the one entry point; each kind is a small function below whose
docstring names its paper and equation. Non-finite inputs propagate (no check here): the trainer
decides what to do with a non-finite loss.
"""

import torch
import torch.nn.functional as F

from ._validate import check_positive, check_vectors, lengths_as

# Accepted hyper-parameters per kind, with their defaults.
_HPARAMS: dict[str, dict[str, object]] = {
    "sigmoid": {"label_smoothing": 0.0},
    "ipo": {},
    "hinge": {},
    "simpo": {"gamma": None, "gamma_beta_ratio": None},
    "chipo": {"chipo_clamp": 20.0, "margin_clip": None},
    "rdpo": {"alpha": 0.01},
    "dpop": {"lam": 50.0},
}
LOSS_KINDS: tuple[str, ...] = tuple(_HPARAMS)
SIMPO_DEFAULT_GAMMA_BETA_RATIO = 0.5


def sigmoid_loss(h: torch.Tensor, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO: −log σ(βh) (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7).

    With `label_smoothing` ls ∈ [0, 0.5]: (1−ls)·(−log σ(βh)) + ls·(−log σ(−βh)), the conservative
    DPO of Mitchell (2023, "A note on DPO with noisy preferences"), i.e. a Bradley–Terry likelihood
    whose labels are flipped with probability ls. h: (B,) → (B,).
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
    chipo_clamp: float = 20.0,
    margin_clip: float | None = None,
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
    alpha: float = 0.01,
) -> torch.Tensor:
    """R-DPO: −log σ(βh + α(|y_w| − |y_l|)) (Park et al. 2024, "Disentangling Length from Quality
    in Direct Preference Optimization", Eq. 9).

    Sign: the `+` is the length-PENALISING one. It comes from solving max E[r − α|y|] − β·KL, whose
    optimum gives r = β log(π/π_ref) + α|y| + const; then σ(r_w − r_l) = σ(βh + α(|y_w| − |y_l|)).
    Effect: a pair whose chosen answer is longer already has a larger logit, so the loss pushes it
    less; a pair whose chosen answer is shorter is pushed more. (B,) ×3 → (B,).
    """
    return -F.logsigmoid(beta * h + alpha * (chosen_lengths - rejected_lengths))


def dpop_loss(h: torch.Tensor, delta_w: torch.Tensor, *, beta: float, lam: float = 50.0) -> torch.Tensor:
    """DPO-Positive: −log σ(β[h − λ·max(0, −Δ_w)]) (Pal et al. 2024, "Smaug: Fixing Failure Modes of
    Preference Optimisation with DPO-Positive", Eq. 3). The penalty is active only when the chosen
    response has become less likely than under the reference. (B,), (B,) → (B,).
    """
    return -F.logsigmoid(beta * (h - lam * torch.relu(-delta_w)))


def _resolve_hparams(kind: str, hparams: dict, beta: float) -> dict:
    if kind not in _HPARAMS:
        raise ValueError(f"unknown loss kind {kind!r}; choose one of {', '.join(LOSS_KINDS)}")
    accepted = _HPARAMS[kind]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        names = ", ".join(accepted) or "none"
        raise ValueError(f"loss {kind!r} got unknown hyper-parameter(s) {unknown}; it accepts: {names}")
    out = {**accepted, **hparams}
    if kind == "sigmoid":
        ls = float(out["label_smoothing"])
        if not 0.0 <= ls <= 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5], got {ls}")
        out["label_smoothing"] = ls
    elif kind == "simpo":
        gamma, ratio = out.pop("gamma"), out.pop("gamma_beta_ratio")
        if gamma is not None and ratio is not None:
            raise ValueError("simpo: give either gamma or gamma_beta_ratio, not both")
        if gamma is None:
            ratio = SIMPO_DEFAULT_GAMMA_BETA_RATIO if ratio is None else float(ratio)
            gamma = ratio * beta
        out["gamma"] = float(gamma)
    elif kind == "chipo":
        out["chipo_clamp"] = check_positive("chipo_clamp", out["chipo_clamp"])
        if out["margin_clip"] is not None:
            out["margin_clip"] = check_positive("margin_clip", out["margin_clip"])
    elif kind == "rdpo":
        out["alpha"] = float(out["alpha"])
    elif kind == "dpop":
        out["lam"] = float(out["lam"])
        if out["lam"] < 0:
            raise ValueError(f"lam must be >= 0, got {out['lam']}")
    return out


def preference_loss(
    kind: str,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    *,
    beta: float,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    **hparams,
) -> torch.Tensor:
    """Per-example loss of DAA `kind` (one of `LOSS_KINDS`), shape (B,); differentiable.

    Inputs: (B,) summed response log-probs under the policy and the reference; `chosen_lengths` /
    `rejected_lengths`: (B,) token counts (needed by `simpo` and `rdpo`). `simpo` ignores the
    reference (it may be None). Hyper-parameters per kind (defaults):
    sigmoid: label_smoothing=0 · simpo: gamma (or gamma_beta_ratio=0.5, gamma = ratio·β) ·
    chipo: chipo_clamp=20.0, margin_clip=None · rdpo: alpha=0.01 · dpop: lam=50.
    Raises ValueError for an unknown kind or hyper-parameter, β ≤ 0, missing lengths or reference.
    """
    beta = check_positive("beta", beta)
    hp = _resolve_hparams(kind, hparams, beta)
    check_vectors(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    pc, pr = policy_chosen_logps, policy_rejected_logps

    if kind == "simpo":
        lc = lengths_as("chosen_lengths", chosen_lengths, pc, "loss 'simpo'")
        lr = lengths_as("rejected_lengths", rejected_lengths, pr, "loss 'simpo'")
        return simpo_loss(pc / lc, pr / lr, beta=beta, **hp)

    if ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError(f"loss {kind!r} needs ref_chosen_logps and ref_rejected_logps")
    delta_w = pc - ref_chosen_logps
    delta_l = pr - ref_rejected_logps
    h = delta_w - delta_l

    if kind == "sigmoid":
        return sigmoid_loss(h, beta=beta, **hp)
    if kind == "ipo":
        return ipo_loss(h, beta=beta)
    if kind == "hinge":
        return hinge_loss(h, beta=beta)
    if kind == "chipo":
        return chipo_loss(delta_w, delta_l, beta=beta, **hp)
    if kind == "rdpo":
        lc = lengths_as("chosen_lengths", chosen_lengths, pc, "loss 'rdpo'")
        lr = lengths_as("rejected_lengths", rejected_lengths, pr, "loss 'rdpo'")
        return rdpo_loss(h, lc, lr, beta=beta, **hp)
    return dpop_loss(h, delta_w, beta=beta, **hp)  # kind == "dpop" (validated above)
