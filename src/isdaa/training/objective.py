"""The one place where a run's `objective:` section becomes a call of `isdaa.objectives.daa_objective`.

The trainer (every micro-batch and the held-out pairs) and the set-up's dry run (before anything is
written) both call `run_objective`, so they cannot disagree on how the config maps to the arguments.
"""

from __future__ import annotations

from isdaa.config import ObjectiveConfig
from isdaa.objectives import ObjectiveOutput, daa_objective

# the names under which `ObjectiveArgumentError.argument` reports a config field, where they differ
_FIELD_OF_ARGUMENT = {"eps": "is_eps"}


def objective_kwargs(objective: ObjectiveConfig) -> dict:
    """The keyword arguments of `daa_objective` set by the config (all but the tensors);
    `label_smoothing` travels with the loss's hyper-parameters when it is not 0."""
    hparams = dict(objective.hparams)
    if objective.label_smoothing:
        hparams["label_smoothing"] = objective.label_smoothing
    return {
        "loss": objective.loss, "beta": objective.beta, "weighting": objective.weighting, "eps": objective.is_eps,
        "sft_eta": objective.sft_eta, "sft_token_mean": objective.sft_token_mean, "loss_hparams": hparams,
    }


def run_objective(objective: ObjectiveConfig, **tensors) -> ObjectiveOutput:
    """`daa_objective` with the config's settings and the batch's tensors (log-probs, lengths, weights)."""
    return daa_objective(**objective_kwargs(objective), **tensors)


def config_field(argument: str) -> str:
    """The `ObjectiveConfig` field behind an argument that `daa_objective` refused (eps -> is_eps)."""
    return _FIELD_OF_ARGUMENT.get(argument, argument)
