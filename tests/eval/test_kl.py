import math

import numpy as np
import pytest
import torch

from isdaa.eval import kl_estimates, kl_terms, mean_se
from isdaa.eval.kl import K3_MAX_LOG_RATIO


def _categorical(p, q, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.choice(len(p), size=n, p=p)
    return np.log(p)[x], np.log(q)[x]


P = np.array([0.30, 0.25, 0.15, 0.12, 0.10, 0.08])
Q = np.array([0.10, 0.15, 0.20, 0.25, 0.20, 0.10])


def test_k1_k3_unbiased_on_categorical():
    exact = float(np.sum(P * np.log(P / Q)))
    pol, ref = _categorical(P, Q, 200_000)
    est = kl_estimates(pol, ref)
    assert est["n"] == 200_000
    for key in ("kl_k1", "kl_k3"):
        err = abs(est[key] - exact)
        assert err < 4 * est[f"{key}_se"], (key, est[key], exact, est[f"{key}_se"])
        assert err < 0.01, (key, est[key], exact)
    # k3 is the low-variance one here
    assert est["kl_k3_se"] < est["kl_k1_se"]


def test_k3_nonnegative_per_sample_and_k1_sign():
    pol, ref = _categorical(P, Q, 10_000, seed=1)
    k1, k3, clamped = kl_terms(pol, ref)
    assert np.all(k3 >= 0)
    assert np.any(k1 < 0)  # k1 is not non-negative per sample
    assert clamped == 0


def test_zero_kl_is_exactly_zero():
    pol, _ = _categorical(P, P, 5_000)
    est = kl_estimates(torch.tensor(pol, dtype=torch.float32), torch.tensor(pol, dtype=torch.float32))
    assert est["kl_k1"] == 0.0 and est["kl_k3"] == 0.0
    assert est["kl_k1_se"] == 0.0 and est["kl_k3_se"] == 0.0


def test_k3_large_ratios_are_finite_and_counted():
    k1, k3, clamped = kl_terms([0.0, 0.0, -1e4], [1000.0, -1000.0, 0.0])
    assert clamped == 2  # d = 1000 and d = 1e4
    assert np.all(np.isfinite(k3))
    assert k3[1] == pytest.approx(-1.0 + 1000.0)  # d = -1000: k3 = e^d - 1 - d
    assert k3[0] == pytest.approx(math.expm1(K3_MAX_LOG_RATIO) - K3_MAX_LOG_RATIO)
    with pytest.raises(ValueError):
        kl_terms([0.0, float("nan")], [0.0, 0.0])
    with pytest.raises(ValueError):
        kl_terms([0.0], [0.0, 1.0])


def test_mean_se_plain_and_grouped():
    m, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    # grouped: SE over the group means (1.5 and 3.5)
    m, se = mean_se([1.0, 2.0, 3.0, 4.0], groups=[0, 0, 1, 1])
    assert m == 2.5 and se == pytest.approx(np.std([1.5, 3.5], ddof=1) / math.sqrt(2))
    assert math.isnan(mean_se([1.0])[1])
    assert math.isnan(mean_se([1.0, 2.0], groups=[0, 0])[1])
