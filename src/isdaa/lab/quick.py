"""`isdaa lab --quick`: the same sweep, cut down to a smoke run that writes the same report shape — the first
method, β and seed, the first regime cut to 10 steps of at most 4 pairs over 4 batches of pairs (2.5 epochs: on a
real model the pairs and the steps are the slow stages) with 2 evaluations (step 0 and the end), the world's own
cut (a model world: at most 16 held-out prompts), one worker, in `<output_dir>-quick`."""

from __future__ import annotations

import dataclasses

from isdaa.config import LabConfig
from isdaa.lab.regimes import DEFAULT_METHODS, DEFAULT_REGIMES
from isdaa.lab.worlds import world_type

QUICK_STEPS = 10
QUICK_BATCHES = 4
QUICK_MAX_BATCH = 4


def quick_config(config: LabConfig) -> LabConfig:
    """`config` cut down to the quick run (see the module docstring)."""
    regime = dict((config.regimes or DEFAULT_REGIMES)[0])
    regime.pop("epochs", None)
    batch = min(int(regime.get("batch_size", 32)), QUICK_MAX_BATCH)
    regime.update(n_pairs=QUICK_BATCHES * batch, batch_size=batch, max_steps=QUICK_STEPS, eval_every=QUICK_STEPS)
    world = world_type(config.world).quick(config.world)
    beta = float(config.betas[0]) if config.betas else config.report_beta
    return dataclasses.replace(
        config, world=world, methods=[dict((config.methods or DEFAULT_METHODS)[0])], regimes=[regime],
        betas=[beta], report_beta=beta, seeds=list(config.seeds[:1]), workers=1,
        output_dir=f"{str(config.output_dir).rstrip('/')}-quick",
    )
