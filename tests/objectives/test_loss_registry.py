"""The loss registry `LOSSES` and `preference_loss`'s checks: names, hyper-parameters, β, lengths, reference,
shapes; every argument error is an `ObjectiveArgumentError` naming its argument."""

import pytest
import torch
from objective_cases import batch, close, loss_of, nll, t

from isdaa.objectives import LOSS_KINDS, LOSSES, ObjectiveArgumentError, preference_loss
from isdaa.objectives.loss_registry import HParam, LossSpec


def argument_error(argument, match, call, *args, **kwargs):
    """Assert `call` raises ObjectiveArgumentError(argument) matching `match`; return the message."""
    with pytest.raises(ObjectiveArgumentError, match=match) as info:
        call(*args, **kwargs)
    assert info.value.argument == argument
    return str(info.value)


# ---------------------------------------------------------------- the registry

def test_loss_kinds_are_the_registry_names():
    assert LOSS_KINDS == tuple(LOSSES) == ("sigmoid", "ipo", "hinge", "simpo", "chipo", "rdpo", "dpop")


def test_every_loss_cites_its_paper_and_states_shapes():
    for kind, spec in LOSSES.items():
        doc = spec.fn.__doc__ or ""
        assert "et al." in doc and "(B,)" in doc, kind


def test_reference_and_length_needs():
    assert [k for k, s in LOSSES.items() if not s.needs_reference] == ["simpo"]
    assert [k for k, s in LOSSES.items() if s.needs_lengths] == ["simpo", "rdpo"]


def test_adding_a_loss_is_one_entry(monkeypatch):
    def margin_loss(h, *, beta, margin):
        """Toy: max(0, margin − βh) (Anyone et al., Eq. 1). (B,) → (B,)."""
        return torch.relu(margin - beta * h)

    spec = LossSpec(margin_loss, ("h",), {"margin": HParam(1.0, lambda name, v: float(v))})
    monkeypatch.setitem(LOSSES, "margin", spec)
    close(loss_of("margin", 0.5), [0.25, 1.75])
    close(loss_of("margin", 0.5, margin=2.0), [1.25, 2.75])


# ---------------------------------------------------------------- loss errors

def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="sigmoid.*ipo.*hinge.*simpo.*chipo.*rdpo.*dpop"):
        loss_of("kto", 0.1)


def test_unknown_kind_suggests_the_closest():
    message = argument_error("loss", "did you mean", loss_of, "sigmod", 0.1)
    assert message == ("unknown value 'sigmod' (did you mean 'sigmoid'?); expected one of "
                       "sigmoid, ipo, hinge, simpo, chipo, rdpo, dpop")
    assert "did you mean" not in argument_error("loss", "unknown value 'kto'", loss_of, "kto", 0.1)


def test_unknown_hparam_names_the_accepted_ones():
    with pytest.raises(ValueError, match="alpha"):
        loss_of("rdpo", 0.1, gamma=1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        loss_of("sigmoid", 0.1, lam=1.0)
    with pytest.raises(ValueError, match="only the sigmoid \\(DPO\\) loss takes it"):
        loss_of("ipo", 0.1, label_smoothing=0.1)


def test_unknown_hparam_errors_name_their_argument():
    message = argument_error("hparams", "unknown hyper-parameter", loss_of, "simpo", 2.0, gama=1.0)
    assert message == "loss 'simpo' got unknown hyper-parameter(s) ['gama']; it accepts: gamma, gamma_beta_ratio"
    argument_error("hparams", "it accepts: none", loss_of, "ipo", 0.1, alpha=1.0)
    message = argument_error("label_smoothing", "only", loss_of, "ipo", 0.1, label_smoothing=0.1)
    assert message == "only the sigmoid (DPO) loss takes it, not 'ipo'"


def test_label_smoothing_bound_is_half_open():
    close(loss_of("sigmoid", 0.1, label_smoothing=0.49), [0.51 * nll(0.15) + 0.49 * nll(-0.15),
                                                           0.51 * nll(-0.15) + 0.49 * nll(0.15)])
    for bad in (0.5, -0.1, float("nan")):  # 0.5 would make the loss ignore the label
        argument_error("label_smoothing", "\\[0, 0.5\\)", loss_of, "sigmoid", 0.1, label_smoothing=bad)
    argument_error("label_smoothing", "number", loss_of, "sigmoid", 0.1, label_smoothing="high")


def test_hparam_value_checks_name_hparams():
    argument_error("hparams", "not both", loss_of, "simpo", 2.0, gamma=0.3, gamma_beta_ratio=0.25)
    argument_error("hparams", "chipo_clamp must be a finite number > 0", loss_of, "chipo", 0.1, chipo_clamp=0)
    argument_error("hparams", "margin_clip", loss_of, "chipo", 0.1, margin_clip=-1.0)
    argument_error("hparams", "lam must be >= 0, got -1.0", loss_of, "dpop", 0.1, lam=-1)
    argument_error("hparams", "alpha must be a number", loss_of, "rdpo", 0.1, alpha="big")
    close(loss_of("dpop", 0.1, lam=0), loss_of("sigmoid", 0.1))  # λ = 0 is plain DPO


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
    argument_error("beta", "beta must be", loss_of, "sigmoid", beta)


def test_reference_required_except_simpo():
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss("sigmoid", t(-1.0), t(-2.0), None, None, beta=0.1)


def test_tensor_errors_are_plain_value_errors():
    for call in (lambda: preference_loss("sigmoid", t(-1.0), t(-2.0), None, None, beta=0.1),
                 lambda: preference_loss("sigmoid", t(-1.0, -2.0), t(-2.0), t(-1.0), t(-1.0), beta=0.1)):
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, ObjectiveArgumentError)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="batch size"):
        preference_loss("sigmoid", t(-1.0, -2.0), t(-2.0), t(-1.0), t(-1.0), beta=0.1)


def test_non_finite_inputs_propagate():
    loss = preference_loss("sigmoid", t(float("nan")), t(-2.0), t(-1.0), t(-1.0), beta=0.1)
    assert torch.isnan(loss).all()
