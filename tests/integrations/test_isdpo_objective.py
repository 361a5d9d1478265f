"""The objective of the TRL drop-in's `ISDPOConfig` (`isdaa.integrations.isdpo_objective`), without TRL: every
`objective:` option of `isdaa train` reaches it, and it is `isdaa train`'s objective for the same settings."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from isdaa.integrations import isdpo_objective, isdpo_objective_config
from isdaa.objectives import Objective, PairLogps, daa_objective

# the fields an ISDPOConfig has by default (TRL's DPOConfig: beta, label_smoothing, loss_type)
DEFAULTS = dict(beta=0.1, label_smoothing=0.0, loss_type=["sigmoid"], daa_loss=None, daa_hparams=None,
                weighting="none", is_eps=1.0, is_ess_target=0.5, sft_eta=0.0, sft_token_mean=False)


def _args(**overrides):
    return SimpleNamespace(**{**DEFAULTS, **overrides})


def _batch():
    g = torch.Generator().manual_seed(0)
    pc, pr = -20 + 4 * torch.randn(8, generator=g), -22 + 4 * torch.randn(8, generator=g)
    rc, rr = pc + 3 * torch.randn(8, generator=g), pr + 3 * torch.randn(8, generator=g)
    lc, lr = torch.randint(1, 9, (8,), generator=g), torch.randint(1, 9, (8,), generator=g)
    return pc, pr, rc, rr, lc, lr


def test_ess_target_and_sft_token_mean_give_isdaas_loss():
    settings = dict(weighting="is_ess", is_eps=2.0, is_ess_target=0.9, sft_eta=0.5, sft_token_mean=True)
    pc, pr, rc, rr, lc, lr = _batch()
    drop_in = isdpo_objective(_args(label_smoothing=0.1, **settings))(PairLogps(pc, pr, lc, lr), PairLogps(rc, rr))
    isdaa = daa_objective(loss="sigmoid", beta=0.1, weighting="is_ess", eps=2.0, ess_target=0.9, sft_eta=0.5,
                          sft_token_mean=True, loss_hparams={"label_smoothing": 0.1}, policy_chosen_logps=pc,
                          policy_rejected_logps=pr, ref_chosen_logps=rc, ref_rejected_logps=rr, chosen_lengths=lc,
                          rejected_lengths=lr)
    defaults = isdpo_objective(_args(weighting="is_ess", is_eps=2.0, sft_eta=0.5))(PairLogps(pc, pr, lc, lr),
                                                                                   PairLogps(rc, rr))
    assert isdaa.metrics["weights/alpha"] < 1.0  # the ESS target binds
    assert torch.equal(drop_in.loss, isdaa.loss) and drop_in.metrics == isdaa.metrics
    assert not torch.allclose(drop_in.loss, defaults.loss)


def test_every_objective_option_is_read():
    """Each ObjectiveConfig field comes from the ISDPOConfig field of its name (loss, hparams: daa_*)."""
    args = _args(beta=0.2, label_smoothing=0.1, daa_loss="sigmoid", daa_hparams={}, weighting="is_curv", is_eps=0.5,
                 is_ess_target=0.7, sft_eta=1.5, sft_token_mean=True)
    config = isdpo_objective_config(args)
    assert dataclasses.asdict(config) == dict(loss="sigmoid", beta=0.2, weighting="is_curv", is_eps=0.5,
                                              is_ess_target=0.7, sft_eta=1.5, sft_token_mean=True,
                                              label_smoothing=0.1, hparams={})
    assert isdpo_objective_config(_args(loss_type=["hinge"])).loss == "hinge"
    assert vars(isdpo_objective(args)) == vars(Objective.from_config(config))


@pytest.mark.parametrize("overrides, match", [
    ({"is_ess_target": 1.5}, r"^ISDPOConfig: is_ess_target: ess_target must be in \(0, 1\]"),
    ({"is_eps": 0.0}, r"^ISDPOConfig: is_eps: eps must be a finite number > 0"),
    ({"daa_loss": "simpo", "daa_hparams": {"gama": 1}}, r"^ISDPOConfig: daa_hparams: loss 'simpo' got unknown"),
    ({"daa_loss": "ipo", "label_smoothing": 0.1}, r"^ISDPOConfig: label_smoothing: only the sigmoid"),
    ({"sft_eta": -1.0}, r"^ISDPOConfig: sft_eta: "),
])
def test_a_bad_option_names_its_isdpo_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        isdpo_objective(_args(**overrides))
