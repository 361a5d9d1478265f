"""The combined objective `daa_objective`: weights × losses (+ SFT), its gradient, metrics and argument errors."""

import math

import pytest
import torch
from objective_cases import DL, DW, H, LC, LR, PC, PR, RC, RR, batch, close, nll, t

from isdaa.objectives import LOSS_KINDS, ObjectiveArgumentError, daa_objective


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
    with pytest.raises(ObjectiveArgumentError, match="unknown value 'importance'; expected one of none") as info:
        objective("importance")
    assert info.value.argument == "weighting"
    with pytest.raises(ValueError, match="eps"):
        objective("is", eps=0.0)
    with pytest.raises(ValueError, match="both"):
        objective("is", behavior_chosen_logps=t(-1.0, -1.0))
    with pytest.raises(ValueError, match="alpha"):
        objective("none", kind="rdpo", loss_hparams={"lam": 1.0})


@pytest.mark.parametrize("argument, bad, match", [
    ("weighting", {"weighting": "iss"}, "unknown value 'iss' \\(did you mean 'is'\\?\\); expected one of none, is,"),
    ("eps", {"eps": -1.0}, "eps must be a finite number > 0"),
    ("beta", {"beta": 0.0}, "beta must be a finite number > 0"),
    ("sft_eta", {"sft_eta": -0.5}, "sft_eta must be a finite number >= 0"),
    ("sft_eta", {"sft_eta": float("inf")}, "sft_eta must be a finite number >= 0"),
    ("loss", {"kind": "sigmod"}, "did you mean 'sigmoid'"),
    ("hparams", {"kind": "simpo", "loss_hparams": {"gama": 1.0}}, "unknown hyper-parameter\\(s\\) \\['gama'\\]"),
    ("label_smoothing", {"kind": "ipo", "loss_hparams": {"label_smoothing": 0.1}}, "only the sigmoid"),
    ("label_smoothing", {"loss_hparams": {"label_smoothing": 0.5}}, "\\[0, 0.5\\)"),
])
def test_argument_errors_name_the_argument(argument, bad, match):
    kw = {"weighting": "is", "kind": "sigmoid", **bad}
    b = batch()
    kw.setdefault("beta", 0.1)
    with pytest.raises(ObjectiveArgumentError, match=match) as info:
        daa_objective(loss=kw.pop("kind"), **kw, **b)
    assert info.value.argument == argument
