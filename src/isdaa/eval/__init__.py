"""Evaluation of over-optimization: sample from the policy, estimate KL(π_θ‖π_ref), score with a gold reward.

- `evaluate(config)`: the whole pipeline (what `isdaa eval` runs); see `isdaa.eval.evaluate`.
- `sampled_eval`: one evaluation of a policy from its samples (gold, KL, length, EOS rate) as a `SampledEval`
  record — what `evaluate`, the in-run monitor and the lab's evaluators share (`isdaa.eval.sampled`).
- `kl_estimates`: k1 / k3 KL estimators with standard errors (`isdaa.eval.kl`).
- `mean_se`, `finite_mean_se`, `t_quantile`: mean ± SE (optionally clustered) and the t quantile of a 95% CI
  (`isdaa.eval.stats`).
Sampling and gold scorers live in `isdaa.generation` (shared with `isdaa pairs` and the lab).
- `win_rate`: share of samples above their baseline, ties ½.
- `fit_rl`, `fit_bon`: Gao et al. (2022) gold-vs-√KL forms; `plot_frontier`, `plot_over_steps`: figures.
"""

from isdaa.eval.curves import fit_bon, fit_rl, gao_bon, gao_rl
from isdaa.eval.evaluate import evaluate
from isdaa.eval.kl import kl_estimates, kl_terms
from isdaa.eval.plots import ci_bounds, plot_frontier, plot_over_steps
from isdaa.eval.sampled import SampledEval, Sampling, sampled_eval
from isdaa.eval.stats import finite_mean_se, mean_se, t_quantile
from isdaa.eval.winrate import win_outcomes, win_rate

__all__ = [
    "evaluate",
    "sampled_eval",
    "Sampling",
    "SampledEval",
    "kl_estimates",
    "kl_terms",
    "mean_se",
    "finite_mean_se",
    "t_quantile",
    "win_rate",
    "win_outcomes",
    "fit_rl",
    "fit_bon",
    "gao_rl",
    "gao_bon",
    "plot_frontier",
    "plot_over_steps",
    "ci_bounds",
]
