"""Unit tests of isdaa.objectives: closed-form values (computed by hand with `math`), gradient signs,
weights, statistics, metrics and the combined objective."""

import math

import pytest
import torch

from isdaa.objectives import (
    LOSS_KINDS,
    WEIGHTINGS,
    daa_objective,
    effective_sample_size,
    importance_weights,
    log_importance_weights,
    preference_loss,
    preference_metrics,
    sft_loss,
    weight_stats,
    weighting_kwargs,
)
from isdaa.objectives.losses import chipo_link

D = torch.float64


def t(*xs, requires_grad=False):
    return torch.tensor(xs, dtype=D, requires_grad=requires_grad)


def nll(z):
    """−log σ(z) in plain math."""
    return math.log1p(math.exp(-z))


# Fixed batch of two pairs: Δ_w = [0.5, −1.0], Δ_l = [−1.0, 0.5], h = [1.5, −1.5].
PC, PR = [-10.0, -20.0], [-12.0, -18.5]
RC, RR = [-10.5, -19.0], [-11.0, -19.0]
LC, LR = [5, 8], [6, 4]
DW = [p - r for p, r in zip(PC, RC)]
DL = [p - r for p, r in zip(PR, RR)]
H = [w - l for w, l in zip(DW, DL)]


def batch(requires_grad=False):
    return dict(
        policy_chosen_logps=t(*PC, requires_grad=requires_grad),
        policy_rejected_logps=t(*PR, requires_grad=requires_grad),
        ref_chosen_logps=t(*RC),
        ref_rejected_logps=t(*RR),
        chosen_lengths=torch.tensor(LC),
        rejected_lengths=torch.tensor(LR),
    )


def loss_of(kind, beta, **hp):
    b = batch()
    return preference_loss(
        kind, b["policy_chosen_logps"], b["policy_rejected_logps"], b["ref_chosen_logps"],
        b["ref_rejected_logps"], beta=beta, chosen_lengths=b["chosen_lengths"],
        rejected_lengths=b["rejected_lengths"], **hp,
    ).tolist()


def close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=tol, abs=tol), (a, b)


# ---------------------------------------------------------------- loss values

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


# ---------------------------------------------------------------- loss errors

def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="sigmoid.*ipo.*hinge.*simpo.*chipo.*rdpo.*dpop"):
        loss_of("kto", 0.1)


def test_unknown_hparam_names_the_accepted_ones():
    with pytest.raises(ValueError, match="alpha"):
        loss_of("rdpo", 0.1, gamma=1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        loss_of("sigmoid", 0.1, lam=1.0)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        loss_of("ipo", 0.1, label_smoothing=0.1)


@pytest.mark.parametrize("kind", ["simpo", "rdpo"])
def test_missing_lengths(kind):
    b = batch()
    with pytest.raises(ValueError, match="chosen_lengths"):
        preference_loss(kind, b["policy_chosen_logps"], b["policy_rejected_logps"], b["ref_chosen_logps"],
                        b["ref_rejected_logps"], beta=0.1)


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_beta_must_be_positive(beta):
    with pytest.raises(ValueError, match="beta"):
        loss_of("sigmoid", beta)


def test_reference_required_except_simpo():
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss("sigmoid", t(-1.0), t(-2.0), None, None, beta=0.1)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="batch size"):
        preference_loss("sigmoid", t(-1.0, -2.0), t(-2.0), t(-1.0), t(-1.0), beta=0.1)


def test_non_finite_inputs_propagate():
    loss = preference_loss("sigmoid", t(float("nan")), t(-2.0), t(-1.0), t(-1.0), beta=0.1)
    assert torch.isnan(loss).all()


# ---------------------------------------------------------------- SFT term

def test_sft_loss_values():
    pc = t(-10.0, -20.0)
    close(sft_loss(pc).tolist(), [10.0, 20.0])
    close(sft_loss(pc, chosen_lengths=torch.tensor([5, 8]), token_mean=True).tolist(), [2.0, 2.5])
    with pytest.raises(ValueError, match="chosen_lengths"):
        sft_loss(pc, token_mean=True)


# ---------------------------------------------------------------- importance weights

def iw(pc, pr, bc, br, **kw):
    return importance_weights(t(*pc), t(*pr), t(*bc), t(*br), **kw)


def test_is_weight_closed_form():
    pc, pr = [-10.0, -10.0, -10.0, -3.0], [-5.0, -5.0, -9.0, -2.0]
    bc, br = [-10.2, -9.0, -12.0, -1.0], [-5.3, -4.0, -9.5, -1.0]
    raw = [(a - b) + (c - d) for a, b, c, d in zip(pc, bc, pr, br)]  # [0.5, −2.0, 2.5, −3.0]
    for eps in (0.25, 1.0):
        expected = [math.exp(min(r, 2 * eps)) for r in raw]
        close(iw(pc, pr, bc, br, eps=eps).tolist(), expected)
    close(log_importance_weights(t(*pc), t(*pr), t(*bc), t(*br)).tolist(), raw)


def test_is_weight_is_detached():
    pc, pr = t(-1.0, -2.0, requires_grad=True), t(-3.0, -1.0, requires_grad=True)
    for name, kw in WEIGHTINGS.items():
        if kw is None:
            continue
        w = importance_weights(pc, pr, t(-1.5, -2.0), t(-2.0, -1.0), chosen_lengths=torch.tensor([2, 3]),
                               rejected_lengths=torch.tensor([4, 1]), **kw)
        assert not w.requires_grad and w.grad_fn is None, name
    raw = log_importance_weights(pc, pr, t(-1.5, -2.0), t(-2.0, -1.0))
    assert not raw.requires_grad


def test_is_weight_is_one_on_policy():
    lp = [-12.3, -0.7, -40.0]
    for eps in (0.1, 1.0):
        assert iw(lp, lp[::-1], lp, lp[::-1], eps=eps).tolist() == [1.0, 1.0, 1.0]


def test_clip_binds_exactly_at_two_eps():
    eps, d = 1.0, 1e-6
    below, at, above = iw([2 - d, 2.0, 2 + d], [0.0] * 3, [0.0] * 3, [0.0] * 3, eps=eps).tolist()
    assert below == pytest.approx(math.exp(2 - d), rel=1e-14) and below < math.exp(2.0)
    assert at == math.exp(2.0) and above == math.exp(2.0)


def test_weight_is_zero_not_nan_for_very_negative_log_probs():
    w = importance_weights(torch.tensor([-1e4, -1e4]), torch.tensor([-1e4, -5.0]),
                           torch.tensor([0.0, 0.0]), torch.tensor([0.0, -5.0]))  # fp32
    assert torch.isfinite(w).all() and w.tolist() == [0.0, 0.0]


def test_self_normalised_weights_survive_underflow():
    w = iw([-1e4, -1e4 - 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], self_normalize=True)
    z = 1.0 + math.exp(-1.0)
    close(w.tolist(), [2.0 / z, 2.0 * math.exp(-1.0) / z])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_raise(bad):
    with pytest.raises(ValueError, match="behavior_chosen_logps.*behaviour log-probs must be finite"):
        iw([-1.0, -2.0], [-1.0, -2.0], [bad, -2.0], [-1.0, -2.0])
    with pytest.raises(ValueError, match="behavior_rejected_logps"):
        iw([-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0], [-1.0, bad])
    with pytest.raises(ValueError, match="policy_chosen_logps"):
        iw([bad, -2.0], [-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0])


def test_token_mean_closed_form():
    pc, pr, bc, br = [-10.0, -4.0], [-6.0, -30.0], [-12.0, -4.5], [-5.0, -10.0]
    lc, lr = [4, 2], [2, 5]
    raw = [(a - b) / m + (c - d) / n for a, b, c, d, m, n in zip(pc, bc, pr, br, lc, lr)]  # [0, −3.75]
    w = iw(pc, pr, bc, br, mode="token_mean", eps=1.0, chosen_lengths=torch.tensor(lc),
           rejected_lengths=torch.tensor(lr))
    close(w.tolist(), [math.exp(min(r, 2.0)) for r in raw])
    with pytest.raises(ValueError, match="chosen_lengths"):
        iw(pc, pr, bc, br, mode="token_mean")


def test_two_sided_clip_closed_form():
    raw = [-5.0, 0.3, 5.0]
    w = iw(raw, [0.0] * 3, [0.0] * 3, [0.0] * 3, eps=1.0, lower_clip=True)
    close(w.tolist(), [math.exp(-2.0), math.exp(0.3), math.exp(2.0)])
    one_sided = iw(raw, [0.0] * 3, [0.0] * 3, [0.0] * 3, eps=1.0)
    assert one_sided[0].item() == pytest.approx(math.exp(-5.0))


def test_self_normalised_closed_form():
    raw = [-1.0, 0.5, 3.0]
    w = iw(raw, [0.0] * 3, [0.0] * 3, [0.0] * 3, eps=1.0, self_normalize=True)
    clipped = [math.exp(min(r, 2.0)) for r in raw]
    mean = sum(clipped) / 3
    close(w.tolist(), [c / mean for c in clipped])
    assert w.mean().item() == pytest.approx(1.0, abs=1e-14)


def test_wpo_ignores_behaviour_and_caps_at_one():
    pc, pr, lc, lr = t(-4.0, 1.0), t(-3.0, 2.0), torch.tensor([2, 1]), torch.tensor([3, 1])
    w = importance_weights(pc, pr, None, None, mode="wpo", chosen_lengths=lc, rejected_lengths=lr, eps=1.0)
    close(w.tolist(), [math.exp(-2.0 - 1.0), 1.0])  # second: raw +3 capped at 0 (not at 2ε)
    w2 = importance_weights(pc, pr, t(-100.0, 5.0), t(7.0, -1.0), mode="wpo", chosen_lengths=lc,
                            rejected_lengths=lr)
    assert torch.equal(w, w2)
    with pytest.raises(ValueError, match="chosen_lengths"):
        importance_weights(pc, pr, None, None, mode="wpo")


@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="eps"):
        iw([-1.0], [-1.0], [-1.0], [-1.0], eps=eps)


def test_unknown_mode_names_the_choices():
    with pytest.raises(ValueError, match="pair.*token_mean.*wpo"):
        iw([-1.0], [-1.0], [-1.0], [-1.0], mode="sequence")


def test_weightings_table():
    assert set(WEIGHTINGS) == {"none", "is", "is_token_mean", "is_two_sided", "is_self_norm", "wpo"}
    assert weighting_kwargs("none") is None
    assert weighting_kwargs("is") == {"mode": "pair"}
    assert weighting_kwargs("is_two_sided") == {"mode": "pair", "lower_clip": True}
    kw = weighting_kwargs("is_self_norm")
    kw["eps"] = 9.0
    assert "eps" not in WEIGHTINGS["is_self_norm"]  # a fresh copy
    with pytest.raises(ValueError, match="none.*is.*wpo"):
        weighting_kwargs("clipped")


# ---------------------------------------------------------------- weight statistics

def test_weight_stats_hand_example():
    s = weight_stats(t(1.0, 1.0, 2.0, 0.0), t(0.0, 2.5, 2.0, -4.0), eps=1.0)
    assert set(s) == {"weights/mean", "weights/min", "weights/max", "weights/ess", "weights/clipped_frac",
                      "weights/raw_log_mean"}
    assert s["weights/mean"] == 1.0 and s["weights/min"] == 0.0 and s["weights/max"] == 2.0
    assert s["weights/ess"] == pytest.approx(16.0 / (4 * 6.0))  # (Σw)² / (n Σw²)
    assert s["weights/clipped_frac"] == 0.25  # only 2.5 > 2ε; exactly 2ε is not clipped
    assert s["weights/raw_log_mean"] == pytest.approx(0.125)
    assert weight_stats(t(1.0), t(2.5), eps=1.0, clip_log_max=3.0)["weights/clipped_frac"] == 0.0


def test_ess_limits():
    assert effective_sample_size(t(3.0, 3.0, 3.0)).item() == pytest.approx(1.0)
    assert effective_sample_size(t(0.0, 0.0)).item() == 0.0
    assert effective_sample_size(t(1.0, 0.0, 0.0, 0.0)).item() == pytest.approx(0.25)


# ---------------------------------------------------------------- preference metrics

def test_preference_metrics_values():
    b = batch()
    m = preference_metrics(*(b[k] for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
                                             "ref_rejected_logps")), beta=0.1,
                           chosen_lengths=b["chosen_lengths"], rejected_lengths=b["rejected_lengths"])
    assert m["rewards/chosen"] == pytest.approx(0.1 * (0.5 - 1.0) / 2)
    assert m["rewards/rejected"] == pytest.approx(0.1 * (-1.0 + 0.5) / 2)
    assert m["rewards/margins"] == pytest.approx(0.1 * (1.5 - 1.5) / 2, abs=1e-15)
    assert m["rewards/accuracies"] == 0.5
    assert m["logps/chosen"] == -15.0 and m["logps/rejected"] == -15.25
    assert m["kl/chosen"] == pytest.approx(-0.25) and m["kl/rejected"] == pytest.approx(-0.25)
    assert m["lengths/chosen"] == 6.5 and m["lengths/rejected"] == 5.0


def test_accuracy_is_strict_and_reference_free_metrics():
    m = preference_metrics(t(-1.0), t(-1.0), t(-2.0), t(-2.0), beta=0.1)
    assert m["rewards/accuracies"] == 0.0  # a tie is not a win
    assert "lengths/chosen" not in m
    m = preference_metrics(t(-1.0), t(-3.0), None, None, beta=2.0)
    assert m["rewards/chosen"] == -2.0 and m["rewards/accuracies"] == 1.0 and "kl/chosen" not in m


# ---------------------------------------------------------------- daa_objective

def objective(weighting, kind="sigmoid", requires_grad=True, **kw):
    b = batch(requires_grad=requires_grad)
    return daa_objective(loss=kind, beta=0.1, weighting=weighting, **b, **kw), b


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_is_equals_base_loss_on_policy(kind):
    """π_θ = μ (= π_ref): the weight is 1, so IS-DAA has the base loss AND the base gradient."""
    grads, values = [], []
    for weighting in ("none", "is"):
        pc, pr = t(*RC, requires_grad=True), t(*RR, requires_grad=True)
        out = daa_objective(loss=kind, beta=0.1, weighting=weighting, policy_chosen_logps=pc,
                            policy_rejected_logps=pr, ref_chosen_logps=t(*RC), ref_rejected_logps=t(*RR),
                            chosen_lengths=torch.tensor(LC), rejected_lengths=torch.tensor(LR))
        out.loss.backward()
        assert out.weights.tolist() == [1.0, 1.0]
        values.append(out.loss.item())
        grads.append(torch.cat([pc.grad, pr.grad]))
    assert values[0] == values[1]
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_is_objective_value_and_gradient_treat_weight_as_constant():
    out, b = objective("is", eps=1.0, behavior_chosen_logps=t(-11.0, -19.0),
                       behavior_rejected_logps=t(-12.5, -18.0))
    raw = [(PC[i] - [-11.0, -19.0][i]) + (PR[i] - [-12.5, -18.0][i]) for i in range(2)]  # [1.5, −1.5]
    w = [math.exp(min(r, 2.0)) for r in raw]
    base = [nll(0.1 * h) for h in H]
    assert out.loss.item() == pytest.approx(sum(wi * li for wi, li in zip(w, base)) / 2, rel=1e-12)
    assert out.loss_sum.item() == pytest.approx(2 * out.loss.item(), rel=1e-12)
    close(out.raw_log_weights.tolist(), raw)
    out.loss.backward()
    # d/dpc_i of w_i·(−log σ(βh_i))/B with w constant = −w_i·β·σ(−βh_i)/B
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    close(b["policy_chosen_logps"].grad.tolist(), [-w[i] * 0.1 * sig(-0.1 * H[i]) / 2 for i in range(2)])


def test_behaviour_defaults_to_reference():
    a, _ = objective("is")
    c, _ = objective("is", behavior_chosen_logps=t(*RC), behavior_rejected_logps=t(*RR))
    d, _ = objective("is", behavior_chosen_logps=t(-11.0, -19.0), behavior_rejected_logps=t(-11.0, -19.0))
    assert torch.equal(a.weights, c.weights) and not torch.equal(a.weights, d.weights)
    close(a.weights.tolist(), [math.exp(min(w + l, 2.0)) for w, l in zip(DW, DL)])


def test_rpo_sft_term_and_user_weights():
    out, _ = objective("none", sft_eta=0.5, user_weights=t(2.0, 0.0))
    base = [nll(0.1 * h) for h in H]
    expected = (2.0 * base[0] + 0.0 * base[1]) / 2 + 0.5 * 0.1 * (10.0 + 20.0) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert out.metrics["loss/sft"] == pytest.approx(15.0)
    tok, _ = objective("none", sft_eta=0.5, sft_token_mean=True)
    assert tok.loss.item() == pytest.approx(sum(base) / 2 + 0.05 * (10 / 5 + 20 / 8) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="user_weights"):
        objective("none", user_weights=t(1.0, -1.0))


def test_self_norm_weighting_has_unit_mean():
    out, _ = objective("is_self_norm")
    assert out.weights.mean().item() == pytest.approx(1.0, abs=1e-14)
    assert out.metrics["weights/mean"] == pytest.approx(1.0, abs=1e-14)


def test_metrics_keys_and_values_for_none():
    out, _ = objective("none")
    required = {"loss", "weights/mean", "weights/min", "weights/max", "weights/ess", "weights/clipped_frac",
                "weights/raw_log_mean", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies", "logps/chosen", "logps/rejected", "kl/chosen", "kl/rejected",
                "lengths/chosen", "lengths/rejected"}
    assert required <= set(out.metrics) and all(isinstance(v, float) for v in out.metrics.values())
    assert out.weights.tolist() == [1.0, 1.0] and out.metrics["weights/ess"] == 1.0
    # the raw pair log weight is still logged: [Δw+Δl] = [−0.5, −0.5]
    assert out.metrics["weights/raw_log_mean"] == pytest.approx(-0.5)
    assert out.metrics["loss"] == pytest.approx(sum(nll(0.1 * h) for h in H) / 2)


def test_clipped_frac_in_objective():
    out, _ = objective("is", eps=0.1, behavior_chosen_logps=t(-11.0, -19.0),
                       behavior_rejected_logps=t(-12.5, -18.0))  # raw [1.5, −1.5], 2ε = 0.2
    assert out.metrics["weights/clipped_frac"] == 0.5
    assert out.metrics["weights/max"] == pytest.approx(math.exp(0.2))


def test_diverged_policy_gives_nan_loss_but_bad_data_raises():
    b = batch()
    b["policy_chosen_logps"] = t(float("nan"), -20.0)
    out = daa_objective(loss="sigmoid", beta=0.1, weighting="is", **b)
    assert math.isnan(out.loss.item())
    b = batch()
    with pytest.raises(ValueError, match="behavior_rejected_logps"):
        daa_objective(loss="sigmoid", beta=0.1, weighting="is", behavior_chosen_logps=t(-1.0, -1.0),
                      behavior_rejected_logps=t(-1.0, float("-inf")), **b)


def test_objective_argument_errors():
    with pytest.raises(ValueError, match="weighting"):
        objective("importance")
    with pytest.raises(ValueError, match="eps"):
        objective("is", eps=0.0)
    with pytest.raises(ValueError, match="both"):
        objective("is", behavior_chosen_logps=t(-1.0, -1.0))
    with pytest.raises(ValueError, match="alpha"):
        objective("none", kind="rdpo", loss_hparams={"lam": 1.0})
