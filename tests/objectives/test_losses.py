"""Values (computed by hand with `math`) and gradient signs of every DAA loss, through `preference_loss`."""

import math

import pytest
import torch
from objective_cases import DL, DW, H, LC, LR, batch, close, loss_of, nll, t

from isdaa.objectives import LOSS_KINDS, preference_loss
from isdaa.objectives.losses import chipo_link


def test_fixture_is_what_the_hand_values_assume():
    assert H == [1.5, -1.5] and DW == [0.5, -1.0]


def test_sigmoid_value():
    close(loss_of("sigmoid", 0.1), [nll(0.1 * h) for h in H])


def test_sigmoid_label_smoothing_value():
    ls = 0.2
    expected = [(1 - ls) * nll(0.1 * h) + ls * nll(-0.1 * h) for h in H]
    close(loss_of("sigmoid", 0.1, label_smoothing=ls), expected)
    assert loss_of("sigmoid", 0.1, label_smoothing=ls) != loss_of("sigmoid", 0.1)


def test_ipo_value():
    close(loss_of("ipo", 0.1), [(1.5 - 5.0) ** 2, (-1.5 - 5.0) ** 2])  # 1/(2β) = 5


def test_hinge_value_and_saturation():
    close(loss_of("hinge", 0.5), [0.25, 1.75])
    close(loss_of("hinge", 1.0), [0.0, 2.5])  # βh = 1.5 > 1: saturated at 0


def test_simpo_value_default_gamma():
    # β = 2, γ = 0.5·β = 1; ℓ̄_w − ℓ̄_l = [−10/5 + 12/6, −20/8 + 18.5/4] = [0, 2.125]
    close(loss_of("simpo", 2.0), [nll(2.0 * 0.0 - 1.0), nll(2.0 * 2.125 - 1.0)])


def test_simpo_gamma_and_ratio():
    close(loss_of("simpo", 2.0, gamma=0.3), [nll(-0.3), nll(4.25 - 0.3)])
    close(loss_of("simpo", 2.0, gamma_beta_ratio=0.25), [nll(-0.5), nll(4.25 - 0.5)])
    with pytest.raises(ValueError, match="not both"):
        loss_of("simpo", 2.0, gamma=0.3, gamma_beta_ratio=0.25)


def test_simpo_ignores_reference():
    b = batch()
    args = (b["policy_chosen_logps"], b["policy_rejected_logps"])
    kw = dict(beta=2.0, chosen_lengths=b["chosen_lengths"], rejected_lengths=b["rejected_lengths"])
    without = preference_loss("simpo", *args, None, None, **kw)
    shifted = preference_loss("simpo", *args, t(3.0, -7.0), t(100.0, 0.0), **kw)
    assert torch.equal(without, shifted)


def test_chipo_value():
    phi = lambda d: d + math.exp(d)  # noqa: E731
    expected = [nll(0.1 * (phi(w) - phi(l))) for w, l in zip(DW, DL)]
    close(loss_of("chipo", 0.1), expected)


def test_chipo_clamp_inside_exp_only():
    d = t(30.0, -30.0, 3.0, requires_grad=True)
    phi = chipo_link(d, 20.0)
    close(phi.tolist(), [30.0 + math.exp(20.0), -30.0 + math.exp(-20.0), 3.0 + math.exp(3.0)])
    phi.sum().backward()
    close(d.grad.tolist(), [1.0, 1.0, 1.0 + math.exp(3.0)])  # linear part keeps its gradient


def test_chipo_stays_finite_for_huge_log_ratios_in_fp32():
    z = torch.zeros(1)
    big = torch.full((1,), 1000.0)
    lo = preference_loss("chipo", z, big, z, z, beta=0.1)  # margin ≈ −0.1·e^20
    hi = preference_loss("chipo", big, z, z, z, beta=0.1)
    assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    assert lo.item() == pytest.approx(0.1 * (1000.0 + math.exp(20.0) - 1.0), rel=1e-5)


def test_chipo_margin_clip_value_and_zero_gradient():
    # margins 0.1·(φ(Δw) − φ(Δl)) = [0.2181..., −0.2181...]; clip at 0.1 binds for both
    close(loss_of("chipo", 0.1, margin_clip=0.1), [nll(0.1), nll(-0.1)])
    b = batch(requires_grad=True)
    kw = {k: b.pop(k) for k in ("chosen_lengths", "rejected_lengths")}
    preference_loss("chipo", *b.values(), beta=0.1, margin_clip=0.1, **kw).sum().backward()
    assert b["policy_chosen_logps"].grad.abs().max() == 0.0


def test_rdpo_value_uses_length_penalising_sign():
    # +α(|y_w| − |y_l|) inside the sigmoid (Park et al. 2024, Eq. 9)
    expected = [nll(0.1 * h + 0.01 * (lw - ll)) for h, lw, ll in zip(H, LC, LR)]
    close(loss_of("rdpo", 0.1), expected)
    close(loss_of("rdpo", 0.1, alpha=0.2), [nll(0.15 - 0.2), nll(-0.15 + 0.8)])


def test_rdpo_pushes_short_chosen_harder_than_long_chosen():
    """Same h; the pair whose chosen answer is shorter gets a larger loss and a larger gradient push."""
    pc = t(-10.0, -10.0, requires_grad=True)
    z = t(-10.0, -10.0)
    loss = preference_loss("rdpo", pc, z, z, z, beta=0.1, alpha=0.05,
                           chosen_lengths=torch.tensor([5, 20]), rejected_lengths=torch.tensor([20, 5]))
    loss.sum().backward()
    assert loss[0] > loss[1]
    assert pc.grad[0] < pc.grad[1] < 0  # both push up the chosen, the short one harder


def test_dpop_value():
    # pair 1: Δ_w ≥ 0, penalty off; pair 2: Δ_w = −1, penalty λ·1
    close(loss_of("dpop", 0.1), [nll(0.15), nll(0.1 * (-1.5 - 50.0))])
    close(loss_of("dpop", 0.1, lam=2.0), [nll(0.15), nll(0.1 * (-1.5 - 2.0))])


def test_dpop_pushes_chosen_harder_than_dpo_when_chosen_fell():
    def grad(kind):
        pc = t(-10.2, requires_grad=True)
        preference_loss(kind, pc, t(-11.0), t(-10.0), t(-10.5), beta=0.1).sum().backward()
        return pc.grad.item()

    assert grad("dpop") < grad("sigmoid") < 0


# a non-saturated point for every kind: Δ_w = −0.2, Δ_l = −0.5, h = 0.3
SIGN_POINT = dict(pc=-10.2, pr=-11.0, rc=-10.0, rr=-10.5)
SIGN_BETA = {"sigmoid": 0.1, "ipo": 0.1, "hinge": 0.1, "simpo": 2.0, "chipo": 0.1, "rdpo": 0.1, "dpop": 0.1}


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_gradient_signs(kind):
    pc = t(SIGN_POINT["pc"], requires_grad=True)
    pr = t(SIGN_POINT["pr"], requires_grad=True)
    loss = preference_loss(kind, pc, pr, t(SIGN_POINT["rc"]), t(SIGN_POINT["rr"]), beta=SIGN_BETA[kind],
                           chosen_lengths=torch.tensor([4]), rejected_lengths=torch.tensor([5]))
    assert loss.shape == (1,) and loss.item() > 0
    loss.sum().backward()
    assert pc.grad.item() < 0, "raising log π(y_w) must lower the loss"
    assert pr.grad.item() > 0, "raising log π(y_l) must raise the loss"


def test_every_kind_is_covered_by_the_sign_test():
    assert set(SIGN_BETA) == set(LOSS_KINDS)
