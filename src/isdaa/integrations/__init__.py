"""Optional adapters to other libraries, each importing its third-party package only in its own module
(`isdaa.integrations.trl`: TRL's DPOTrainer with isdaa's objectives; extra `isdaa[trl]`). Nothing in isdaa's core
imports this package.

The version check and the objective of an `ISDPOConfig` live here, without importing TRL, so that they can be
tested (and read) without it.
"""

from __future__ import annotations

import dataclasses

from isdaa.config import ObjectiveConfig
from isdaa.objectives import Objective, ObjectiveArgumentError

# TRL versions `isdaa.integrations.trl` supports: the 1.16 series (tested with 1.16.0, the `trl` / `bench` pins).
SUPPORTED_TRL = (1, 16)
TESTED_TRL = "1.16.0"


def check_trl_version(version: str) -> None:
    """ImportError (one line) unless `version` is a TRL release of the supported series."""
    parts = version.split("+")[0].split(".")
    try:
        series = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        series = None
    if series != SUPPORTED_TRL:
        wanted = ".".join(map(str, SUPPORTED_TRL))
        raise ImportError(
            f"isdaa.integrations.trl supports TRL {wanted}.x (tested with {TESTED_TRL}); installed: trl {version}. "
            f"Install a supported one: pip install 'isdaa[trl]'"
        )


# TRL loss_type -> the isdaa loss with the same formula on summed log-probs (TRL's `ipo` averages per token:
# not the same; set `daa_loss="ipo"` for the summed IPO of the IS-DAA paper)
TRL_LOSSES = {"sigmoid": "sigmoid", "hinge": "hinge"}
# `ObjectiveConfig` fields -> the `ISDPOConfig` fields that set them, where the names differ (`beta` and
# `label_smoothing` are TRL's own `DPOConfig` fields)
ISDPO_FIELDS = {"loss": "daa_loss", "hparams": "daa_hparams"}


def isdpo_objective_config(args) -> ObjectiveConfig:
    """The `ObjectiveConfig` that an `ISDPOConfig` sets: every field of it, read from the ISDPOConfig field of the
    same name (or `ISDPO_FIELDS`'s); the loss defaults to TRL's `loss_type` (`TRL_LOSSES`)."""
    values = {f.name: getattr(args, ISDPO_FIELDS.get(f.name, f.name)) for f in dataclasses.fields(ObjectiveConfig)}
    values["loss"] = values["loss"] or TRL_LOSSES[args.loss_type[0]]
    values["hparams"] = dict(values["hparams"] or {})
    return ObjectiveConfig(**values)


def isdpo_objective(args) -> Objective:
    """The `Objective` of an `ISDPOConfig`, built from its `ObjectiveConfig` as `isdaa train` builds its own; a bad
    field is a one-line ValueError "ISDPOConfig: <field>: ..."."""
    try:
        return Objective.from_config(isdpo_objective_config(args))
    except ObjectiveArgumentError as exc:
        raise ValueError(f"ISDPOConfig: {ISDPO_FIELDS.get(exc.argument, exc.argument)}: {exc}") from None
