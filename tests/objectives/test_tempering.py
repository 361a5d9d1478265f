"""ESS-targeted tempering (`is_ess`, `is_ess_norm`) and the curvature-only weighting (`is_curv`): closed forms,
maximality, invariances, extremes, the global batch, and the curvature split of IPO and DPO."""

from __future__ import annotations

import math

import pytest
import torch

from isdaa.objectives import (
    WEIGHTINGS,
    Objective,
    ObjectiveArgumentError,
    PairLogps,
    daa_objective,
    effective_sample_size,
    importance_weights,
)
from isdaa.objectives.weighting import ess_temperature, log_ess


def _logps(seed: int, b: int = 16, spread: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    pc = -20 + spread * torch.randn(b, generator=g, dtype=torch.float64)
    pr = -22 + spread * torch.randn(b, generator=g, dtype=torch.float64)
    rc = pc + spread * torch.randn(b, generator=g, dtype=torch.float64)
    rr = pr + spread * torch.randn(b, generator=g, dtype=torch.float64)
    return pc, pr, rc, rr


def test_two_weights_closed_form():
    """c = (0, -x): ESS(α) = (1+u)²/(2(1+u²)), u = e^{-αx}; ESS = 3/4 at u = 2 − √3."""
    x = 10.0
    alpha = ess_temperature(torch.tensor([0.0, -x], dtype=torch.float64), 0.75)
    assert alpha == pytest.approx(-math.log(2 - math.sqrt(3)) / x, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.1, 0.5, 0.9])
def test_alpha_is_the_largest_that_meets_the_target(seed, target):
    c = 5.0 * torch.randn(32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    alpha = ess_temperature(c, target)
    assert 0.0 <= alpha <= 1.0
    assert float(log_ess(alpha * c).exp()) >= target - 1e-9
    if alpha < 1.0:
        assert float(log_ess((alpha + 1e-6) * c).exp()) < target
    # the ESS of the weights equals what the normalised-ESS statistic reports
    w = torch.exp(alpha * c)
    assert float(effective_sample_size(w)) == pytest.approx(float(log_ess(alpha * c).exp()), rel=1e-9)


def test_alpha_invariances_and_limits():
    c = torch.tensor([-3.0, 0.5, 1.0, -7.0], dtype=torch.float64)
    a = ess_temperature(c, 0.6)
    assert ess_temperature(c + 123.0, 0.6) == pytest.approx(a, abs=1e-12)  # ESS ignores a common factor
    assert ess_temperature(c[[3, 1, 0, 2]], 0.6) == pytest.approx(a, abs=1e-12)  # and the order
    assert ess_temperature(c, 0.3) >= a >= ess_temperature(c, 0.9)  # a higher target tempers more
    assert ess_temperature(torch.tensor([-5.0]), 0.99) == 1.0  # B = 1: ESS = 1 whatever α
    assert ess_temperature(torch.full((8,), -40.0), 1.0) == 1.0  # equal weights: ESS = 1
    with pytest.raises(ObjectiveArgumentError):
        ess_temperature(c, 0.0)


def test_is_ess_weights_extremes_are_finite():
    b = 8
    pc = torch.full((b,), -10.0, dtype=torch.float64)
    pc[0] = 1e4  # one pair the policy loves, the others it left for good
    pc[1:4] = -1e4
    pr = pc.clone()
    zero = torch.zeros(b, dtype=torch.float64)
    for mode in ({"ess_tempered": True}, {"ess_tempered": True, "self_normalize": True}):
        w = importance_weights(pc, pr, zero, zero, eps=1.0, ess_target=0.5, **mode)
        assert torch.isfinite(w).all() and (w >= 0).all() and not w.requires_grad
        assert float(effective_sample_size(w)) >= 0.5 - 1e-9
        if mode.get("self_normalize"):
            assert float(w.mean()) == pytest.approx(1.0, abs=1e-12)
        else:
            assert float(w.max()) <= math.exp(2.0) + 1e-9  # never above the paper's clip


def test_alpha_one_is_the_paper_and_weights_match_their_definition():
    pc, pr, rc, rr = _logps(0, spread=0.01)  # the policy is close to the reference: ESS ≈ 1
    assert torch.equal(importance_weights(pc, pr, rc, rr, eps=1.0, ess_tempered=True, ess_target=0.5),
                       importance_weights(pc, pr, rc, rr, eps=1.0))
    pc, pr, rc, rr = _logps(1)
    c = ((pc - rc) + (pr - rr)).clamp(max=2.0)
    alpha = ess_temperature(c, 0.5)
    assert alpha < 1.0
    torch.testing.assert_close(importance_weights(pc, pr, rc, rr, eps=1.0, ess_tempered=True, ess_target=0.5),
                               torch.exp(alpha * c), rtol=0, atol=1e-12)


@pytest.mark.parametrize("weighting", ["is_ess", "is_ess_norm", "is_curv", "is_self_norm"])
def test_a_shard_with_the_global_log_weights_weights_as_the_whole_batch(weighting):
    """Under DDP a process holds half the batch: given the global batch's log weights, its weights (and its
    share of the loss sum) are those the whole batch gives its pairs in one process."""
    pc, pr, rc, rr = _logps(2)
    whole = daa_objective(loss="ipo", beta=0.1, policy_chosen_logps=pc, policy_rejected_logps=pr,
                          ref_chosen_logps=rc, ref_rejected_logps=rr, weighting=weighting, eps=5.0)
    raw = (pc - rc) + (pr - rr)
    half = slice(0, 8)
    shard = daa_objective(loss="ipo", beta=0.1, policy_chosen_logps=pc[half], policy_rejected_logps=pr[half],
                          ref_chosen_logps=rc[half], ref_rejected_logps=rr[half], weighting=weighting,
                          global_log_weights=raw, eps=5.0)
    torch.testing.assert_close(shard.weights, whole.weights[half], rtol=1e-12, atol=0)
    alone = daa_objective(loss="ipo", beta=0.1, policy_chosen_logps=pc[half], policy_rejected_logps=pr[half],
                          ref_chosen_logps=rc[half], ref_rejected_logps=rr[half], weighting=weighting, eps=5.0)
    assert not torch.allclose(alone.weights, whole.weights[half])  # the test can tell the difference
    if weighting != "is_self_norm":
        assert shard.metrics["weights/alpha"] == pytest.approx(whole.metrics["weights/alpha"], abs=1e-12)


@pytest.mark.parametrize("weighting", ["is_ess", "is_ess_norm", "is_curv", "is_self_norm", "is", "is_two_sided"])
def test_gather_makes_two_shards_weight_as_one_batch(weighting):
    """`Objective(gather=...)` with a stand-in for `Accelerator.gather` (this shard's raw log weights, then the
    other's): each of two shards gets the whole batch's weights for its pairs; nothing is gathered where nothing
    depends on the whole batch."""
    pc, pr, rc, rr = _logps(4)
    kw = dict(loss="sigmoid", beta=0.1, weighting=weighting, eps=5.0)
    whole = daa_objective(**kw, policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=rc,
                          ref_rejected_logps=rr)
    halves = (slice(0, 8), slice(8, None))
    shards = [dict(policy_chosen_logps=pc[h], policy_rejected_logps=pr[h], ref_chosen_logps=rc[h],
                   ref_rejected_logps=rr[h]) for h in halves]
    raws = [(s["policy_chosen_logps"] - s["ref_chosen_logps"]) + (s["policy_rejected_logps"] - s["ref_rejected_logps"])
            for s in shards]
    objective = Objective(**kw)
    for rank, (half, shard) in enumerate(zip(halves, shards)):
        gathered = []

        def gather(t, rank=rank, gathered=gathered):
            gathered.append(torch.cat([t if r == rank else raws[r] for r in range(2)]))
            return gathered[-1]

        out = objective(PairLogps(shard["policy_chosen_logps"], shard["policy_rejected_logps"]),
                        PairLogps(shard["ref_chosen_logps"], shard["ref_rejected_logps"]), gather=gather)
        global_lw = gathered[0] if gathered else None
        assert (global_lw is None) == (not WEIGHTINGS[weighting].whole_batch)
        torch.testing.assert_close(out.weights, whole.weights[half], rtol=1e-12, atol=0)


def test_curvature_weighting_of_ipo_is_its_closed_form():
    """IPO (h − 1/(2β))² = 1/(4β²) − h/β + h²: is_curv gives 1/(4β²) − h/β + w·h², and its gradient in the
    chosen log-prob is (−1/β + 2·w·h)/B."""
    beta = 0.1
    pc, pr, rc, rr = _logps(3)
    pc = pc.clone().requires_grad_(True)
    out = daa_objective(loss="ipo", beta=beta, policy_chosen_logps=pc, policy_rejected_logps=pr,
                        ref_chosen_logps=rc, ref_rejected_logps=rr, weighting="is_curv")
    h = ((pc - rc) - (pr - rr)).detach()
    w = out.weights
    expected = (1 / (4 * beta**2) - h / beta + w * h**2).mean()
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-12)
    out.loss.backward()
    torch.testing.assert_close(pc.grad, (-1 / beta + 2 * w * h) / len(h), rtol=1e-10, atol=1e-12)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-12)  # self-normalised


def test_curvature_weighting_of_dpo_linear_part_and_unit_weights():
    """DPO: ℓ(0) = log 2 and g·Δ = −(β/2)·h; with all weights 1 (policy = reference up to a common shift of
    every log weight) the objective equals plain DPO."""
    beta = 0.5
    pc, pr, rc, rr = _logps(4)
    shift = torch.full_like(pc, 0.3)
    pc_eq, pr_eq = rc + shift, rr - shift  # every pair has the same log weight: normalised weights all 1
    for policy in ((pc, pr), (pc_eq, pr_eq)):
        out = daa_objective(loss="sigmoid", beta=beta, policy_chosen_logps=policy[0], policy_rejected_logps=policy[1],
                            ref_chosen_logps=rc, ref_rejected_logps=rr, weighting="is_curv")
        h = (policy[0] - rc) - (policy[1] - rr)
        remainder = out.losses - math.log(2) + beta * h / 2
        expected = (math.log(2) - beta * h / 2 + out.weights * remainder).mean()
        assert float(out.loss) == pytest.approx(float(expected), rel=1e-12)
    plain = daa_objective(loss="sigmoid", beta=beta, policy_chosen_logps=pc_eq, policy_rejected_logps=pr_eq,
                          ref_chosen_logps=rc, ref_rejected_logps=rr)
    assert float(out.loss) == pytest.approx(float(plain.loss), rel=1e-12)


def test_curvature_weighting_needs_a_reference_and_works_without_grad():
    pc, pr, rc, rr = _logps(5)
    lengths = {"chosen_lengths": torch.full_like(pc, 4.0), "rejected_lengths": torch.full_like(pc, 5.0)}
    with pytest.raises(ObjectiveArgumentError) as err:
        daa_objective(loss="simpo", beta=2.0, policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=None,
                      ref_rejected_logps=None, behavior_chosen_logps=rc, behavior_rejected_logps=rr,
                      weighting="is_curv", **lengths)
    assert err.value.argument == "weighting"
    with torch.no_grad():  # the held-out metrics run without grad; the linear part still needs autograd
        out = daa_objective(loss="sigmoid", beta=0.1, policy_chosen_logps=pc, policy_rejected_logps=pr,
                            ref_chosen_logps=rc, ref_rejected_logps=rr, weighting="is_curv")
    assert math.isfinite(float(out.loss)) and 0.0 <= out.metrics["weights/alpha"] <= 1.0


@pytest.mark.parametrize("target", [0.0, 1.5, float("nan")])
def test_bad_ess_target_names_its_config_field(target):
    from isdaa.config import ObjectiveConfig
    from isdaa.errors import InputError
    from isdaa.training.setup import build_objective

    with pytest.raises(ObjectiveArgumentError):
        daa_objective(loss="sigmoid", beta=0.1, policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.ones(2),
                      ref_chosen_logps=torch.zeros(2), ref_rejected_logps=torch.zeros(2), weighting="is_ess",
                      ess_target=target)
    with pytest.raises(InputError, match="objective.is_ess_target"):
        build_objective(ObjectiveConfig(weighting="is_ess", is_ess_target=target))
