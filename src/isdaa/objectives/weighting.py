"""Importance weightings of IS-DAAs (Nguyen et al. 2025, "Mitigating Reward Over-optimization in Direct
Alignment Algorithms with Importance Sampling", arXiv 2506.08681): the registry `WEIGHTINGS`, the weights, their
ESS-targeted tempering and the curvature-only weighting.

The paper's objective, with δ = log π_θ(y|x) − log μ(y|x) (μ = behaviour policy, = π_ref by default):

    L = mean_i  w_i · ℓ_f(h_i),        w_i = sg( exp( min(δ_w,i + δ_l,i, 2ε) ) )

one weight per pair (product of the two sequence ratios), clipped above at e^{2ε}, no gradient
through it. The other weightings are ours, for ablations; each entry of `WEIGHTINGS` says what it does.
All weights here are computed in log space and detached.

ESS-targeted tempering (ours). In the lab the paper's weights' normalised effective sample size
ESS = (Σw)²/(B·Σw²) falls to ≈ 1/B within a few hundred steps: one pair carries the batch. Tempering interpolates
between the plain DAA (α = 0, all weights 1) and the paper (α = 1), c_i = the clipped log weight:

    w_i(α) = exp(α·c_i),      α* = max{ α ∈ [0, 1] : ESS(w(α)) ≥ target }

ESS(w(α)) is non-increasing in α (d/dα log ESS = 2·(E_α[c] − E_2α[c]) ≤ 0, where E_t is the mean of c under the
softmax(t·c) tilt, which grows with t), so α* is found by bisection. With the target met, the weight keeps the
paper's direction (pairs the policy has moved away from count less) but can no longer hand the batch to a few
pairs. B = 1 or equal log weights: ESS = 1 for every α, so α* = 1. All in float64, detached.

Curvature-only weighting (ours; the paper's argument is a Taylor expansion of the loss around the reference).
Expand a reference-based DAA loss ℓ in the log-ratios Δ = (Δ_w, Δ_l) = log π_θ − log π_ref around Δ = 0:

    ℓ(Δ) = ℓ(0) + g·Δ + R(Δ),        g = ∂ℓ/∂Δ at Δ = 0,      R = the remainder (second order and up)

The IS paper's point is about R: its gradient is a KL-like regulariser only in expectation over the POLICY's
samples, and the importance weight restores that expectation on offline data. The linear part g·Δ is the
preference signal itself; weighting it too throws away data (the lab's ESS collapse). So this weighting keeps
the linear part unweighted and weights only the remainder:

    term_i = ℓ_i(0) + g_i·Δ_i + w_i·R_i(Δ_i)            (w_i = 1: the plain loss)

For IPO, ℓ = (h − 1/(2β))², this is exactly 1/(4β²) − h/β + w·h²: the preference term unweighted, the h² term
weighted. For DPO, g·Δ = −(β/2)·h and R = −log σ(βh) − log 2 + βh/2. g is computed by autograd at the reference
point, so any loss of the registry that uses the reference works unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._validate import ObjectiveArgumentError, check_choice, check_finite, check_positive, check_vectors, lengths_as

WEIGHT_MODES: tuple[str, ...] = ("pair", "token_mean", "wpo")
BISECTION_STEPS = 40  # α* to within 2^-40
LOG_TOLERANCE = 1e-12  # equal weights give log ESS = −1e-16, not 0: a rounding error is no shortfall


@dataclass(frozen=True)
class WeightingSpec:
    """One importance weighting: how a pair's raw log weight (`log_importance_weights`) becomes its weight
    (`importance_weights`) and where the weight enters the loss. The paper's (Nguyen et al. 2025, arXiv
    2506.08681) is w = sg(exp(min(δ_w + δ_l, 2ε))) on the whole loss; each entry of `WEIGHTINGS` gives its formula.

    mode: the raw log weight — "pair" (the paper: δ_w + δ_l), "token_mean", "wpo" (see `log_importance_weights`);
        None: no weighting (all weights 1; the paper's pair log weight is still logged).
    lower_clip: clip the log weight to [−2ε, 2ε] instead of the paper's (−∞, 2ε].
    tempered: w = exp(α·c), α the largest in [0, 1] with the batch's ESS >= the objective's ESS target.
    self_normalize: w / mean_batch(w), in log space.
    curvature_only: weight only the loss's remainder around the reference, ℓ(0) + g·Δ + w·R (needs a reference).
    """

    mode: str | None
    lower_clip: bool = False
    tempered: bool = False
    self_normalize: bool = False
    curvature_only: bool = False

    @property
    def whole_batch(self) -> bool:
        """Whether a pair's weight depends on the whole batch (tempering, self-normalisation): under data
        parallelism the objective then gathers every process's raw log weights."""
        return self.tempered or self.self_normalize

    def importance_kwargs(self) -> dict | None:
        """The keyword arguments of `importance_weights` for this weighting (those it sets), None without one."""
        if self.mode is None:
            return None
        flags = {"lower_clip": self.lower_clip, "self_normalize": self.self_normalize, "ess_tempered": self.tempered}
        return {"mode": self.mode, **{name: True for name, on in flags.items() if on}}


WEIGHTINGS: dict[str, WeightingSpec] = {
    "none": WeightingSpec(None),
    # the paper: w = sg(exp(min(δ_w + δ_l, 2ε)))
    "is": WeightingSpec("pair"),
    # ours: w = sg(exp(min(δ_w/|y_w| + δ_l/|y_l|, 2ε))), a per-token geometric-mean ratio
    "is_token_mean": WeightingSpec("token_mean"),
    # ours: the paper's weight with its log clipped on both sides, exp(clamp(δ_w + δ_l, −2ε, 2ε))
    "is_two_sided": WeightingSpec("pair", lower_clip=True),
    # ours: the paper's weight divided by its batch mean (self-normalised importance sampling)
    "is_self_norm": WeightingSpec("pair", self_normalize=True),
    # WPO (Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization"), simplified:
    # w = exp(min(ℓ̄_w + ℓ̄_l, 0)) with ℓ̄ the policy's mean token log-prob
    "wpo": WeightingSpec("wpo"),
    # ours, from the lab's ESS collapse: w = exp(α·c), α the largest with ESS >= target
    "is_ess": WeightingSpec("pair", tempered=True),
    # ours: the tempered weight divided by its batch mean
    "is_ess_norm": WeightingSpec("pair", tempered=True, self_normalize=True),
    # ours: the tempered, normalised weight on the loss's curvature only, ℓ(0) + g·Δ + w·R
    "is_curv": WeightingSpec("pair", tempered=True, self_normalize=True, curvature_only=True),
}


def weighting_spec(name: str) -> WeightingSpec:
    """`WEIGHTINGS[name]`; ObjectiveArgumentError("weighting") naming the choices for an unknown name."""
    check_choice("weighting", name, WEIGHTINGS)
    return WEIGHTINGS[name]


def weighting_kwargs(name: str) -> dict | None:
    """Keyword arguments of `importance_weights` for weighting `name` (a fresh dict), or None for
    "none". Raises ObjectiveArgumentError("weighting") naming the choices for an unknown name."""
    return weighting_spec(name).importance_kwargs()


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
    `ess_tempered` (ours, see the module docstring): w = exp(α·c) with α the largest in [0, 1] such that
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


# ---- ESS-targeted tempering (module docstring) ------------------------------------------------------------------
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


# ---- the curvature-only weighting (module docstring) -----------------------------------------------------------
def linear_part(loss_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pc: torch.Tensor, pr: torch.Tensor,
                ref_chosen: torch.Tensor, ref_rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ℓ(0), g·Δ), both (B,): the loss at the reference (detached) and its first-order term, differentiable in
    the policy log-probs `pc`, `pr`. `loss_at(chosen, rejected)` is the per-example loss of policy log-probs."""
    with torch.enable_grad():
        at_c = ref_chosen.detach().clone().requires_grad_(True)
        at_r = ref_rejected.detach().clone().requires_grad_(True)
        l0 = loss_at(at_c, at_r)
        g_c, g_r = torch.autograd.grad(l0.sum(), (at_c, at_r))
    delta_c = pc - ref_chosen.detach()
    delta_r = pr - ref_rejected.detach()
    return l0.detach(), g_c * delta_c + g_r * delta_r


def curvature_weighted(losses: torch.Tensor, weights: torch.Tensor, l0: torch.Tensor,
                       linear: torch.Tensor) -> torch.Tensor:
    """term_i = ℓ_i(0) + g_i·Δ_i + w_i·(ℓ_i − ℓ_i(0) − g_i·Δ_i), (B,)."""
    return l0 + linear + weights * (losses - l0 - linear)
