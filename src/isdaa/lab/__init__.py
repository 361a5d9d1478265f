"""The controlled over-optimization lab: a world with an exactly known gold reward (or a real pretrained model),
its reference, Bradley–Terry preference pairs sampled from it, and sweeps of methods × β × seeds through the trainer.

- `isdaa.lab.protocol`: what a sweep asks of a world (`LabWorld`); `isdaa.lab.worlds`: config → world (the factory).
- `isdaa.lab.controlled` (kinds topics, junk, behavior) and `isdaa.lab.model_world` (kind model): the worlds.
- `isdaa.lab.world`: the controlled world's model (prompts, base distribution, gold reward) — `World`, `lab_scorer`.
- `isdaa.lab.sft`: the SFT reference (`train_reference`); `isdaa.lab.preference_data`: its pairs (`make_pairs`).
- `isdaa.lab.regimes`: the default methods and regimes and their validation.
- `isdaa.lab.evaluator`: the `LabEvaluator` training callback (gold, KL, weights at every evaluation).
- `isdaa.lab.validation`: the whole config checked before anything is prepared or written.
- `isdaa.lab.sweep`: `run_lab(LabConfig)` — prepare (`prepare`), specs (`spec`), runs (`pool`), results (`results`).
- `isdaa.lab.summary` (numbers), `isdaa.lab.verdict` (text, tables), `isdaa.lab.outputs` (csv, plots, report.md).
`isdaa lab --config lab.yaml` runs a sweep (default: `default.yaml` here); `isdaa demo` runs `demo.yaml`.
"""

from __future__ import annotations

from pathlib import Path

from isdaa.config import LabConfig, load_config
from isdaa.lab import sweep, validation

HERE = Path(__file__).resolve().parent
DEFAULT_YAML = HERE / "default.yaml"
DEMO_YAML = HERE / "demo.yaml"

__all__ = ["run_lab", "run_demo", "load_lab_config", "DEFAULT_YAML", "DEMO_YAML"]


def run_lab(config, *, progress="default") -> dict:
    """Run a lab sweep (`isdaa.lab.sweep.run_lab`); `progress`: a callable taking one line, or None."""
    return sweep.run_lab(config, progress=sweep.say if progress == "default" else progress)


def load_lab_config(path=None, overrides=None, *, demo: bool = False):
    """A `LabConfig` from a YAML file (default: the packaged default.yaml / demo.yaml) plus dotted overrides,
    checked whole (`isdaa.lab.validation.check_loaded`: InputError "<file or command line>: option ...")."""
    source = path or (DEMO_YAML if demo else DEFAULT_YAML)
    config = load_config(LabConfig, source, overrides)
    validation.check_loaded(config, validation.given_options(source, overrides), source)
    return config


def run_demo(out_dir: str | None = None, *, progress="default", **overrides) -> dict:
    """Run the demo (`demo.yaml`): DPO, IPO, IS-DPO, IS-IPO and one variant at β = 0.01, 3 seeds, few pairs.

    `out_dir` defaults to the YAML's output_dir; other keyword overrides are dotted LabConfig keys."""
    if out_dir is not None:
        overrides["output_dir"] = out_dir
    return run_lab(load_lab_config(None, overrides, demo=True), progress=progress)
