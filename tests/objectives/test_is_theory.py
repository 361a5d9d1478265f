"""The identity behind IS-DAAs, checked exactly on a small categorical response space.

Let π = π_θ = softmax(θ) over K responses, Δ(y) = log π_θ(y) − log π_ref(y), and a pair loss
ℓ(y, y') = ½(Δ(y) − Δ(y'))² — the second-order (Taylor) term of a DAA loss in h = Δ_w − Δ_l. The
gradient is taken of the loss only, the pair's sampling distribution held fixed. For y, y' ~ π i.i.d.:

    E[∇ℓ] = E[(Δ − Δ')(∇Δ − ∇Δ')] = 2(E_π[Δ∇Δ] − E_π[Δ]·E_π[∇Δ])
    ∇Δ = ∇log π_θ and E_π[∇log π_θ] = Σ_y ∇π_θ(y) = 0, so E[∇ℓ] = 2·E_π[Δ·∇log π_θ]
    ∇KL(π_θ‖π_ref) = Σ_y ∇π_θ(y)·Δ(y) + Σ_y π_θ(y)·∇log π_θ(y) = E_π[Δ·∇log π_θ] + 0
    ⇒ E_{π×π}[∇ ½(Δ_w − Δ_l)²] = 2·∇_θ KL(π_θ‖π_ref)      (and 4·∇KL for the full square).

Offline pairs come from μ × μ instead; the pair weight π_θ(y)π_θ(y')/(μ(y)μ(y')) restores the
on-policy expectation exactly, and clipping it gives that exactness up. Everything is enumerated
exactly (all K² ordered pairs) in float64, so the tolerance is 1e-10.
"""

import torch

from isdaa.objectives import importance_weights, preference_loss


D = torch.float64
K = 6
TOL = 1e-10


def setup():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(K, generator=g, dtype=D).requires_grad_(True)
    log_ref = torch.log_softmax(torch.randn(K, generator=g, dtype=D), 0)
    log_mu = torch.log_softmax(2.0 * torch.randn(K, generator=g, dtype=D), 0)  # ≠ π_θ, ≠ π_ref
    return theta, log_ref, log_mu


def pairs():
    """All K² ordered pairs (y_w, y_l) as two index vectors."""
    yw, yl = torch.meshgrid(torch.arange(K), torch.arange(K), indexing="ij")
    return yw.reshape(-1), yl.reshape(-1)


def half_square_losses(theta, log_ref):
    logp = torch.log_softmax(theta, 0)
    delta = logp - log_ref
    yw, yl = pairs()
    return 0.5 * (delta[yw] - delta[yl]) ** 2


def expected_grad(theta, per_pair_losses, pair_probs):
    """∇_θ Σ_pairs q(pair)·ℓ(pair) with the sampling probabilities q held fixed."""
    (grad,) = torch.autograd.grad((pair_probs.detach() * per_pair_losses).sum(), theta, retain_graph=True)
    return grad


def grad_kl(theta, log_ref):
    logp = torch.log_softmax(theta, 0)
    kl = (logp.exp() * (logp - log_ref)).sum()
    (grad,) = torch.autograd.grad(kl, theta)
    return grad


def pair_prob(log_dist):
    yw, yl = pairs()
    return (log_dist[yw] + log_dist[yl]).exp()


def is_weights(theta, log_mu, eps):
    """The package's IS weight for every pair: policy = log π_θ, behaviour = log μ."""
    logp = torch.log_softmax(theta, 0)
    yw, yl = pairs()
    return importance_weights(logp[yw], logp[yl], log_mu[yw], log_mu[yl], eps=eps)


def test_on_policy_gradient_of_squared_term_is_twice_kl_gradient():
    theta, log_ref, _ = setup()
    gkl = grad_kl(theta, log_ref)
    assert gkl.norm() > 0.1  # not a 0 = 0 check
    logp = torch.log_softmax(theta, 0)
    g_on = expected_grad(theta, half_square_losses(theta, log_ref), pair_prob(logp))
    torch.testing.assert_close(g_on, 2.0 * gkl, rtol=0, atol=TOL)
    # the intermediate form 2(E[Δ∇Δ] − E[Δ]E[∇Δ]), with ∇Δ = ∇log π_θ (a K×K Jacobian)
    p = logp.exp().detach()
    delta = (logp - log_ref).detach()
    jac = torch.autograd.functional.jacobian(lambda th: torch.log_softmax(th, 0), theta.detach())
    e_dgrad = (p * delta) @ jac
    e_grad = p @ jac
    torch.testing.assert_close(e_grad, torch.zeros(K, dtype=D), rtol=0, atol=TOL)  # E_π[∇log π] = 0
    torch.testing.assert_close(g_on, 2.0 * (e_dgrad - (p @ delta) * e_grad), rtol=0, atol=TOL)


def test_weighted_offline_gradient_equals_on_policy_gradient():
    theta, log_ref, log_mu = setup()
    losses = half_square_losses(theta, log_ref)
    logp = torch.log_softmax(theta, 0)
    g_on = expected_grad(theta, losses, pair_prob(logp))

    w = is_weights(theta, log_mu, eps=100.0)  # 2ε far above every log ratio: unclipped
    yw, yl = pairs()
    torch.testing.assert_close(w, (logp[yw] + logp[yl] - log_mu[yw] - log_mu[yl]).exp().detach(),
                               rtol=1e-13, atol=0)
    g_is = expected_grad(theta, w * losses, pair_prob(log_mu))
    torch.testing.assert_close(g_is, g_on, rtol=0, atol=TOL)

    g_off = expected_grad(theta, losses, pair_prob(log_mu))  # unweighted offline
    assert (g_off - g_on).norm() > 0.1 * g_on.norm()


def test_binding_clip_breaks_exactness():
    theta, log_ref, log_mu = setup()
    losses = half_square_losses(theta, log_ref)
    g_on = expected_grad(theta, losses, pair_prob(torch.log_softmax(theta, 0)))
    yw, yl = pairs()
    logp = torch.log_softmax(theta, 0).detach()
    raw = logp[yw] + logp[yl] - log_mu[yw] - log_mu[yl]
    eps = raw.max().item() / 4.0  # 2ε = half the largest log ratio: the clip binds
    assert eps > 0 and (raw > 2 * eps).any()
    g_clip = expected_grad(theta, is_weights(theta, log_mu, eps=eps) * losses, pair_prob(log_mu))
    assert (g_clip - g_on).norm() > 1e-3 * g_on.norm()


def test_ipo_loss_through_the_package():
    """The package's IPO loss (h − 1/(2β))² = h² − h/β + const: over all ordered pairs the linear term
    cancels by symmetry, so on policy E[∇ℓ_ipo] = 4·∇KL, and IS-weighted offline pairs reproduce it."""
    theta, log_ref, log_mu = setup()
    logp = torch.log_softmax(theta, 0)
    yw, yl = pairs()
    losses = preference_loss("ipo", logp[yw], logp[yl], log_ref[yw], log_ref[yl], beta=0.1)
    g_on = expected_grad(theta, losses, pair_prob(logp))
    torch.testing.assert_close(g_on, 4.0 * grad_kl(theta, log_ref), rtol=0, atol=TOL)
    g_is = expected_grad(theta, is_weights(theta, log_mu, eps=100.0) * losses, pair_prob(log_mu))
    torch.testing.assert_close(g_is, g_on, rtol=0, atol=TOL)
