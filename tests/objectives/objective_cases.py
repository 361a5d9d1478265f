"""Shared by the tests of isdaa.objectives: a fixed batch of two pairs whose values the tests compute
by hand with `math`, and small helpers (float64 tensors, −log σ, list comparison)."""

import math

import pytest
import torch

from isdaa.objectives import preference_loss

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
