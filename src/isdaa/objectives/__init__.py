"""Pure-tensor objectives of isdaa: DAA losses, RPO's SFT term, IS-DAA importance weights, weight
statistics, preference metrics and the combined objective. Imports nothing but torch.

- `losses.py` (the math of each loss) and `loss_registry.py` (`LOSSES`, `preference_loss`);
- `weighting.py`: the importance weightings (`WEIGHTINGS`, `importance_weights`), their tempering and the
  curvature-only weighting;
- `metrics.py`: what the objective logs (`weight_stats`, `preference_metrics`);
- `objective.py`: `Objective` — built once from its settings (or `Objective.from_config`), called per batch on
  `PairLogps` — and `daa_objective`, which builds one and calls it.

A bad argument (loss or weighting name, β, ε, η, a hyper-parameter) raises `ObjectiveArgumentError`, a ValueError
whose `.argument` names it.

Shapes: every per-example input and output is a (B,) tensor of SUMMED response log-probs / token counts.
"""

from ._validate import ObjectiveArgumentError
from .loss_registry import LOSS_KINDS, LOSSES, preference_loss
from .metrics import effective_sample_size, preference_metrics, weight_stats
from .objective import RECOMMENDED, Objective, ObjectiveOutput, PairLogps, daa_objective, sft_loss
from .weighting import (
    WEIGHT_MODES,
    WEIGHTINGS,
    WeightingSpec,
    importance_weights,
    log_importance_weights,
    weighting_kwargs,
)

__all__ = [
    "LOSSES",
    "RECOMMENDED",
    "LOSS_KINDS",
    "WEIGHTINGS",
    "WEIGHT_MODES",
    "Objective",
    "ObjectiveArgumentError",
    "ObjectiveOutput",
    "PairLogps",
    "WeightingSpec",
    "daa_objective",
    "effective_sample_size",
    "importance_weights",
    "log_importance_weights",
    "preference_loss",
    "preference_metrics",
    "sft_loss",
    "weight_stats",
    "weighting_kwargs",
]
