"""One run of a lab sweep (`RunSpec`: its identity — method, β, seed, regime — and its `TrainConfig`) and the
sweep's runs (`build_specs`: regime × method × β × seed)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from isdaa.config import LabConfig, TrainConfig, load_config
from isdaa.errors import InputError
from isdaa.lab.protocol import LabWorld, Prepared
from isdaa.lab.regimes import regime_overrides, regime_steps, resolve_methods, resolve_regimes

__all__ = ["RunSpec", "build_specs", "slug"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: what it is (method label and objective options, β, seed, regime and its steps), its validated
    `train` config, the dotted keys that config was built from (`train_keys`: the run's fingerprint, so a record
    written by an earlier sweep is recognised), the world's settings, the reference and the evaluation size."""

    method: str
    overrides: dict
    beta: float
    seed: int
    regime: str
    steps: int
    train: TrainConfig
    train_keys: dict
    world: dict
    reference_dir: str
    eval_samples: int
    keep_models: bool

    @property
    def run_dir(self) -> Path:
        return Path(self.train.output_dir)

    def meta(self) -> dict:
        """The run's identity, as its record and results.json hold it."""
        return {"method": self.method, "overrides": self.overrides, "beta": self.beta, "seed": self.seed,
                "regime": self.regime, "steps": self.steps}


def slug(text: str) -> str:
    """`text` as a directory name (a method label in `runs/<regime>/<method>/`)."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_") or "method"


def _train_keys(run_dir: Path, prep: Prepared, world: LabWorld, reg: dict, method: dict, beta, seed) -> dict:
    """The dotted TrainConfig keys of one run: the lab's fixed settings, the world's, the method's objective, the
    regime's."""
    return {
        "output_dir": str(run_dir), "seed": int(seed), "log_every": 1, "save_every": 0,
        "overwrite": True, "resume": "never", "progress": False, "num_threads": 1,
        "model.name_or_path": prep.reference["path"],
        "data.train_file": prep.pairs[int(seed)]["files"][reg["name"]],
        **world.train_overrides(),
        "objective.beta": float(beta),
        **{f"objective.{k}": v for k, v in method["overrides"].items()},
        **regime_overrides(reg),
    }


def _train_config(keys: dict, reg: dict, method: dict, beta) -> TrainConfig:
    """The run's TrainConfig; InputError naming the run (regime / method / β) and the option."""
    try:
        return load_config(TrainConfig, None, keys)
    except InputError as exc:
        raise InputError(f"run {reg['name']} / {method['label']} / beta {beta}: {exc}") from None


def build_specs(config: LabConfig, out: Path, prep: Prepared, world: LabWorld) -> list[RunSpec]:
    """One spec per (regime, method, β, seed), in that nesting order; each TrainConfig is validated here, so a bad
    combination fails before anything runs."""
    specs = []
    for reg in resolve_regimes(config.regimes):
        for m in resolve_methods(config.methods):
            for beta in config.betas:
                for seed in config.seeds:
                    run_dir = out / "runs" / reg["name"] / slug(m["label"]) / f"beta-{beta}" / f"seed-{seed}"
                    keys = _train_keys(run_dir, prep, world, reg, m, beta, seed)
                    specs.append(RunSpec(
                        method=m["label"], overrides=m["overrides"], beta=float(beta), seed=int(seed),
                        regime=reg["name"], steps=regime_steps(reg), train=_train_config(keys, reg, m, beta),
                        train_keys=keys, world=world.settings(), reference_dir=prep.reference["path"],
                        eval_samples=config.eval_samples, keep_models=config.keep_models))
    return specs
