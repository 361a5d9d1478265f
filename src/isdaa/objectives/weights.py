"""Importance weights of IS-DAAs (Nguyen et al. 2025, "Mitigating Reward Over-optimization in Direct
Alignment Algorithms with Importance Sampling", arXiv 2506.08681).

The paper's objective, with δ = log π_θ(y|x) − log μ(y|x) (μ = behaviour policy, = π_ref by default):

    L = mean_i  w_i · ℓ_f(h_i),        w_i = sg( exp( min(δ_w,i + δ_l,i, 2ε) ) )

one weight per pair (product of the two sequence ratios), clipped above at e^{2ε}, no gradient
through it. The other modes and options are ours, for ablations; `WEIGHTINGS` names them.
All weights here are computed in log space and detached.
"""

import torch

from ._validate import check_choice, check_finite, check_positive, check_vectors, lengths_as
from .tempering import ess_temperature, normalize_to_mean_one

WEIGHT_MODES: tuple[str, ...] = ("pair", "token_mean", "wpo")

# User-facing weighting name -> keyword arguments of `importance_weights` (None = no weighting).
WEIGHTINGS: dict[str, dict | None] = {
    "none": None,
    "is": {"mode": "pair"},  # the paper
    "is_token_mean": {"mode": "token_mean"},
    "is_two_sided": {"mode": "pair", "lower_clip": True},
    "is_self_norm": {"mode": "pair", "self_normalize": True},
    "wpo": {"mode": "wpo"},
    # ours, from the lab's ESS collapse (isdaa.objectives.tempering, isdaa.objectives.curvature):
    "is_ess": {"mode": "pair", "ess_tempered": True},  # w = exp(α·c), α the largest with ESS >= target
    "is_ess_norm": {"mode": "pair", "ess_tempered": True, "self_normalize": True},  # ... divided by its batch mean
    "is_curv": {"mode": "pair", "ess_tempered": True, "self_normalize": True},  # on the loss's curvature only
}
# Weightings applied to the curvature part of the loss only (`isdaa.objectives.curvature`), not to the whole loss.
CURVATURE_ONLY: frozenset[str] = frozenset({"is_curv"})


def weighting_kwargs(name: str) -> dict | None:
    """Keyword arguments of `importance_weights` for weighting `name` (a fresh dict), or None for
    "none". Raises ObjectiveArgumentError("weighting") naming the choices for an unknown name."""
    check_choice("weighting", name, WEIGHTINGS)
    kwargs = WEIGHTINGS[name]
    return None if kwargs is None else dict(kwargs)


def log_importance_weights(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    behavior_chosen_logps: torch.Tensor | None,
    behavior_rejected_logps: torch.Tensor | None,
    *,
    mode: str = "pair",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw (pre-clip) log importance weight per pair, shape (B,), detached.

    - `pair` (the paper): δ_w + δ_l, δ = policy − behaviour summed log-probs.
    - `token_mean` (ours): δ_w/|y_w| + δ_l/|y_l| — a per-token geometric-mean ratio.
    - `wpo`: ℓ̄_w + ℓ̄_l with ℓ̄ = summed policy log-prob / length, ignoring the behaviour policy
      (WPO-style, Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization";
      simplified: without WPO's per-token Σ_v π(v)² normaliser, so it is the plain mean token log-prob).
    Inputs are (B,) tensors; lengths (B,) token counts, required by `token_mean` and `wpo`.
    """
    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(WEIGHT_MODES)}")
    pc, pr = policy_chosen_logps.detach(), policy_rejected_logps.detach()
    check_vectors(policy_chosen_logps=pc, policy_rejected_logps=pr)
    if mode == "wpo":
        lc = lengths_as("chosen_lengths", chosen_lengths, pc, "mode 'wpo'")
        lr = lengths_as("rejected_lengths", rejected_lengths, pr, "mode 'wpo'")
        return pc / lc + pr / lr
    if behavior_chosen_logps is None or behavior_rejected_logps is None:
        raise ValueError(f"mode {mode!r} needs behavior_chosen_logps and behavior_rejected_logps")
    bc, br = behavior_chosen_logps.detach(), behavior_rejected_logps.detach()
    check_vectors(policy_chosen_logps=pc, behavior_chosen_logps=bc, behavior_rejected_logps=br)
    delta_w, delta_l = pc - bc, pr - br
    if mode == "pair":
        return delta_w + delta_l
    lc = lengths_as("chosen_lengths", chosen_lengths, pc, "mode 'token_mean'")
    lr = lengths_as("rejected_lengths", rejected_lengths, pr, "mode 'token_mean'")
    return delta_w / lc + delta_l / lr


def clip_bounds(*, eps: float, mode: str = "pair", lower_clip: bool = False) -> tuple[float | None, float]:
    """(lower, upper) bounds applied to the raw log weight: upper = 2ε (0 for `wpo`: weight ≤ 1, as
    in WPO's code); lower = −2ε when `lower_clip`, else None (no lower clip, as in the paper)."""
    upper = 0.0 if mode == "wpo" else 2.0 * eps
    return (-2.0 * eps if lower_clip else None), upper


def importance_weights(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    behavior_chosen_logps: torch.Tensor | None,
    behavior_rejected_logps: torch.Tensor | None,
    *,
    eps: float = 1.0,
    mode: str = "pair",
    lower_clip: bool = False,
    self_normalize: bool = False,
    ess_tempered: bool = False,
    ess_target: float = 0.5,
    global_log_weights: torch.Tensor | None = None,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stop-gradient importance weights, shape (B,), `requires_grad` False.

    Paper (mode "pair", defaults): w = sg(exp(min(δ_w + δ_l, 2ε))), used in L = mean_i w_i·ℓ_f(h_i).
    Computed as exp of the clamped log weight, so it never overflows (w ≤ e^{2ε}) and a very negative
    raw log weight (e.g. −1e4) gives 0, not NaN.
    Options (ours): `lower_clip` clamps the log weight to [−2ε, 2ε] (two-sided clip);
    `self_normalize` returns w / mean_batch(w), done in log space (w_i = exp(c_i − logsumexp(c) + log B)
    for clamped log weights c), so it cannot underflow to all zeros: the largest weight is ≥ 1.
    `ess_tempered` (ours, `isdaa.objectives.tempering`): w = exp(α·c) with α the largest in [0, 1] such that
    the batch's ESS ≥ `ess_target`. `global_log_weights`: the raw log weights of the GLOBAL batch (all processes,
    this one's included) — α and the self-normalising mean are then computed over it, so N processes weight
    their shards exactly as one process weights the whole batch.
    `mode="wpo"` caps the weight at 1 (log weight clipped at 0) and ignores the behaviour log-probs.
    Raises ObjectiveArgumentError for ε ≤ 0; ValueError for an unknown mode, missing lengths, or NaN/±inf
    inputs.
    """
    eps = check_positive("eps", eps)
    named = {
        "policy_chosen_logps": (policy_chosen_logps, "policy log-probs"),
        "policy_rejected_logps": (policy_rejected_logps, "policy log-probs"),
    }
    if mode != "wpo":
        named["behavior_chosen_logps"] = (behavior_chosen_logps, "behaviour log-probs")
        named["behavior_rejected_logps"] = (behavior_rejected_logps, "behaviour log-probs")
    raw = log_importance_weights(
        policy_chosen_logps,
        policy_rejected_logps,
        behavior_chosen_logps,
        behavior_rejected_logps,
        mode=mode,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    for name, (t, what) in named.items():
        check_finite(name, t.detach(), what)
    weights, _ = weights_from_log_weights(raw, eps=eps, mode=mode, lower_clip=lower_clip,
                                          self_normalize=self_normalize, ess_tempered=ess_tempered,
                                          ess_target=ess_target, global_log_weights=global_log_weights)
    return weights


def weights_from_log_weights(
    raw: torch.Tensor,
    *,
    eps: float,
    mode: str = "pair",
    lower_clip: bool = False,
    self_normalize: bool = False,
    ess_tempered: bool = False,
    ess_target: float = 0.5,
    global_log_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float | None]:
    """(weights, α) from finite raw log weights (B,) — the clip, tempering and normalisation of
    `importance_weights`, whose docstring gives the formulas. α is the tempering exponent (None unless
    `ess_tempered`), returned so that callers log the α that was used instead of computing it again."""
    lower, upper = clip_bounds(eps=eps, mode=mode, lower_clip=lower_clip)
    log_w = raw.detach().clamp(min=lower, max=upper)
    over = None
    if global_log_weights is not None:
        over = global_log_weights.detach().to(log_w.dtype).clamp(min=lower, max=upper)
    alpha = None
    if ess_tempered:
        alpha = ess_temperature(log_w if over is None else over, ess_target)
        log_w, over = alpha * log_w, (None if over is None else alpha * over)
    if self_normalize:
        log_w = normalize_to_mean_one(log_w, over)
    return torch.exp(log_w), alpha
