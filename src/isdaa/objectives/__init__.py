"""Pure-tensor objectives of isdaa: DAA losses, RPO's SFT term, IS-DAA importance weights, weight
statistics, preference metrics and the combined `daa_objective`. Imports nothing but torch.

The losses are named in one registry, `LOSSES` (loss_registry.py); a bad argument (loss or weighting name,
β, ε, η, a hyper-parameter) raises `ObjectiveArgumentError`, a ValueError whose `.argument` names it.

Shapes: every per-example input and output is a (B,) tensor of SUMMED response log-probs / token counts.
"""

from ._validate import ObjectiveArgumentError
from .loss_registry import LOSS_KINDS, LOSSES, preference_loss
from .metrics import preference_metrics
from .objective import ObjectiveOutput, daa_objective, global_batch_log_weights, needs_global_batch
from .recommended import RECOMMENDED
from .regularizers import sft_loss
from .stats import effective_sample_size, weight_stats
from .weights import (
    WEIGHT_MODES,
    WEIGHTINGS,
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
    "ObjectiveArgumentError",
    "ObjectiveOutput",
    "daa_objective",
    "effective_sample_size",
    "global_batch_log_weights",
    "importance_weights",
    "log_importance_weights",
    "needs_global_batch",
    "preference_loss",
    "preference_metrics",
    "sft_loss",
    "weight_stats",
    "weighting_kwargs",
]
