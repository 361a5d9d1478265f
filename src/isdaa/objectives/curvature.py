"""Importance weighting of the curvature part of a DAA loss only (ours; motivated by Nguyen et al. 2025,
arXiv 2506.08681, whose argument is a Taylor expansion of the loss around the reference).

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

from collections.abc import Callable

import torch


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
