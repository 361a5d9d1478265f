"""Sample-based estimators of KL(π_θ ‖ π_ref) (Schulman, "Approximating KL divergence", 2020).

Inputs are summed sequence log-probs of completions y drawn from π_θ (temperature 1, no top-p/top-k):
`policy_logps[i] = log π_θ(y_i|x_i)`, `ref_logps[i] = log π_ref(y_i|x_i)`. With d_i = log π_ref − log π_θ
(the log of r = π_ref/π_θ):

    k1_i = −d_i                      unbiased, can be negative per sample, high variance
    k3_i = (r_i − 1) − log r_i = expm1(d_i) − d_i     unbiased (E_πθ[r] = 1), ≥ 0 per sample, lower variance

Both are computed in float64. For k3, d is clamped above at `K3_MAX_LOG_RATIO` (50 nats) before the
exponential, only so that e^d cannot overflow; a sample that hits the clamp has π_ref/π_θ > e^50 and would
dominate any mean anyway. The number of clamped samples is returned (`kl_k3_clamped`) so that it is never
silent. Nothing is clamped below: for d → −∞, k3 → −1 − d exactly.

Standard errors: `isdaa.eval.stats.mean_se` — the plain SE of the mean over samples, or, with `groups` (e.g.
the prompt index), the SE over group means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isdaa.eval.stats import mean_se

K3_MAX_LOG_RATIO = 50.0

__all__ = ["K3_MAX_LOG_RATIO", "kl_terms", "kl_estimates"]


def _array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().double().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: non-finite values ({int((~np.isfinite(arr)).sum())} of {arr.size})")
    return arr


def kl_terms(policy_logps, ref_logps) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-sample (k1, k3, n_clamped) as float64 arrays; see the module docstring."""
    pol = _array(policy_logps, "policy_logps")
    ref = _array(ref_logps, "ref_logps")
    if pol.shape != ref.shape:
        raise ValueError(f"policy_logps and ref_logps differ in length: {pol.size} vs {ref.size}")
    d = ref - pol  # log r, r = π_ref / π_θ
    k1 = -d
    clamped = int((d > K3_MAX_LOG_RATIO).sum())
    dc = np.minimum(d, K3_MAX_LOG_RATIO)
    k3 = np.maximum(np.expm1(dc) - dc, 0.0)  # ≥ 0 mathematically; the max only removes rounding below 0
    return k1, k3, clamped


def kl_estimates(policy_logps, ref_logps, *, groups: Sequence | None = None) -> dict:
    """KL(π_θ‖π_ref) estimates from samples of π_θ: `kl_k1`, `kl_k1_se`, `kl_k3`, `kl_k3_se`, `n`,
    `kl_k3_clamped` (samples whose log-ratio hit the overflow clamp). `groups`: see `mean_se`."""
    k1, k3, clamped = kl_terms(policy_logps, ref_logps)
    m1, s1 = mean_se(k1, groups)
    m3, s3 = mean_se(k3, groups)
    return {"kl_k1": m1, "kl_k1_se": s1, "kl_k3": m3, "kl_k3_se": s3, "n": int(k1.size), "kl_k3_clamped": clamped}
