"""The controlled over-optimization lab: a world with an exactly known gold reward, an SFT reference,
Bradley–Terry preference pairs sampled from it, and sweeps of methods × β × seeds through `isdaa.train`.

- `isdaa.lab.world`: the world (prompts, base distribution, gold reward) — `World`, `lab_scorer`.
- `isdaa.lab.sft`: the reference policy (`train_reference`).
- `isdaa.lab.preference_data`: preference pairs (`make_pairs`, `bt_probability`).
- `isdaa.lab.sweep`: `run_lab(LabConfig)`; `isdaa.lab.evaluator`: the `LabEvaluator` callback.
- `isdaa.lab.report`: summaries, plots, `report.md`.
`isdaa lab --config lab.yaml` runs a sweep (default: `default.yaml` here); `isdaa demo` runs `demo.yaml`.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_YAML = HERE / "default.yaml"
DEMO_YAML = HERE / "demo.yaml"

__all__ = ["run_lab", "run_demo", "lab_main", "load_lab_config", "DEFAULT_YAML", "DEMO_YAML"]


def run_lab(config, *, progress="default") -> dict:
    """Run a lab sweep (`isdaa.lab.sweep.run_lab`); `progress`: a callable taking one line, or None."""
    from isdaa.lab.sweep import run_lab as _run, say

    return _run(config, progress=say if progress == "default" else progress)


def load_lab_config(path=None, overrides=None, *, demo: bool = False):
    """A `LabConfig` from a YAML file (default: the packaged default.yaml / demo.yaml) plus dotted overrides."""
    from isdaa.config import LabConfig, load_config

    return load_config(LabConfig, path or (DEMO_YAML if demo else DEFAULT_YAML), overrides)


def run_demo(out_dir: str | None = None, *, progress="default", **overrides) -> dict:
    """Run the demo (`demo.yaml`): DPO, IPO, IS-DPO, IS-IPO and one variant at β = 0.01, 3 seeds, few pairs.

    `out_dir` defaults to the YAML's output_dir; other keyword overrides are dotted LabConfig keys."""
    if out_dir is not None:
        overrides["output_dir"] = out_dir
    return run_lab(load_lab_config(None, overrides, demo=True), progress=progress)


def lab_main(args: list[str], demo: bool = False) -> int:
    """`isdaa lab [--config FILE] [--key value ...]` / `isdaa demo [...]`: returns the exit code."""
    from isdaa.config import LabConfig, describe, parse_overrides

    name = "demo" if demo else "lab"
    if "-h" in args or "--help" in args:
        print(f"usage: isdaa {name} [--config FILE] [--key value ...]\n")
        print(f"Runs {'the demo (' + str(DEMO_YAML) + ')' if demo else 'a lab sweep (default ' + str(DEFAULT_YAML) + ')'};"
              " a --config file replaces it. Options (dotted keys; YAML uses the same tree):")
        packaged = load_lab_config(demo=demo)
        for key, tp, _ in describe(LabConfig):
            value = packaged
            for part in key.split("."):
                value = getattr(value, part)
            many = isinstance(value, list) and value and isinstance(value[0], dict)
            shown = f"[{len(value)} entries, see the YAML]" if many else repr(value)
            print(f"  --{key:<34} {tp:<6} default: {shown}")
        print("\nmethods: a list of {label: NAME, <objective option>: value, ...} (empty: the default sweep);\n"
              "regimes: a list of {name, n_pairs, max_steps or epochs, lr, batch_size, eval_every, <dotted train key>}.")
        return 0
    from isdaa.cli import _split_config

    path, rest = _split_config(args)
    config = load_lab_config(path, parse_overrides(rest), demo=demo)
    run_lab(config)
    return 0
