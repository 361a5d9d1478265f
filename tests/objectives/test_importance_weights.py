"""IS-DAA importance weights: the paper's closed form, clipping, the other modes, the weightings table."""

import math

import pytest
import torch
from objective_cases import close, t

from isdaa.objectives import WEIGHTINGS, importance_weights, log_importance_weights, weighting_kwargs


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
    for name in WEIGHTINGS:
        kw = weighting_kwargs(name)
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
    assert set(WEIGHTINGS) == {"none", "is", "is_token_mean", "is_two_sided", "is_self_norm", "wpo", "is_ess",
                               "is_ess_norm", "is_curv"}
    assert weighting_kwargs("none") is None
    assert weighting_kwargs("is") == {"mode": "pair"}
    assert weighting_kwargs("is_two_sided") == {"mode": "pair", "lower_clip": True}
    kw = weighting_kwargs("is_self_norm")
    kw["eps"] = 9.0
    assert "eps" not in weighting_kwargs("is_self_norm")  # a fresh copy
    with pytest.raises(ValueError, match="none.*is.*wpo"):
        weighting_kwargs("clipped")
