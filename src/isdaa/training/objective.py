"""The one place where a run's `objective:` section becomes a call of `isdaa.objectives.daa_objective`.

The trainer (every micro-batch and the held-out pairs) and the dry run `check_objective` (the set-up's and the
lab's, before anything is written) both call `run_objective`, so they cannot disagree on how the config maps to
the arguments — and loss names, weightings and hyper-parameters are checked by `isdaa.objectives` alone.
"""

from __future__ import annotations

import torch

from isdaa.config import ObjectiveConfig
from isdaa.errors import InputError
from isdaa.objectives import ObjectiveArgumentError, ObjectiveOutput, daa_objective, global_batch_log_weights

# the names under which `ObjectiveArgumentError.argument` reports a config field, where they differ
_FIELD_OF_ARGUMENT = {"eps": "is_eps", "ess_target": "is_ess_target"}


def objective_kwargs(objective: ObjectiveConfig) -> dict:
    """The keyword arguments of `daa_objective` set by the config (all but the tensors);
    `label_smoothing` travels with the loss's hyper-parameters when it is not 0."""
    hparams = dict(objective.hparams)
    if objective.label_smoothing:
        hparams["label_smoothing"] = objective.label_smoothing
    return {
        "loss": objective.loss, "beta": objective.beta, "weighting": objective.weighting, "eps": objective.is_eps,
        "sft_eta": objective.sft_eta, "sft_token_mean": objective.sft_token_mean, "loss_hparams": hparams,
        "ess_target": objective.is_ess_target,
    }


def run_objective(objective: ObjectiveConfig, gather=None, **tensors) -> ObjectiveOutput:
    """`daa_objective` with the config's settings and the batch's tensors (log-probs, lengths, weights).

    `gather` (e.g. `Accelerator.gather`, under DDP): concatenates a (B,) tensor over processes; given, a weighting
    that depends on the whole batch sees the global batch, so N processes weight as one process would."""
    if gather is not None:
        tensors["global_log_weights"] = global_batch_log_weights(objective.weighting, gather, **tensors)
    return daa_objective(**objective_kwargs(objective), **tensors)


def config_field(argument: str) -> str:
    """The `ObjectiveConfig` field behind an argument that `daa_objective` refused (eps -> is_eps)."""
    return _FIELD_OF_ARGUMENT.get(argument, argument)


def check_objective(objective: ObjectiveConfig) -> None:
    """Run the configured objective once on dummy log-probs: a bad loss name, weighting or hyper-parameter
    (and any other argument the objective refuses) is an InputError `option objective.<field>: ...`."""
    logps = torch.tensor([-4.0, -6.0])
    try:
        run_objective(
            objective, policy_chosen_logps=logps, policy_rejected_logps=logps - 1, ref_chosen_logps=logps,
            ref_rejected_logps=logps - 1, chosen_lengths=torch.tensor([2.0, 3.0]),
            rejected_lengths=torch.tensor([3.0, 2.0]),
        )
    except ObjectiveArgumentError as exc:
        raise InputError(f"option objective.{config_field(exc.argument)}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"option objective (loss '{objective.loss}', objective.hparams {objective.hparams}): {exc}"
        ) from None
