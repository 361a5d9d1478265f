"""`isdaa.lab.validation`: the packaged and example lab configs pass; `run_lab` itself (a LabConfig built in
Python) refuses a bad config before it prepares or writes anything."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from isdaa.config import LabConfig, load_config
from isdaa.errors import InputError
from isdaa.lab import load_lab_config, run_lab
from isdaa.lab.validation import check_lab_config, check_runs, load_world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONTROLLED_EXAMPLES = sorted(EXAMPLES.glob("lab-*.yaml")) + sorted((EXAMPLES / "lab-worlds").glob("*.yaml"))


@pytest.mark.parametrize("path", [None, *CONTROLLED_EXAMPLES], ids=lambda p: p.name if p else "default")
def test_packaged_and_example_configs_pass(path):
    load_lab_config(path)  # checked whole, world and every run included


def test_demo_and_model_example_pass():
    load_lab_config(demo=True)
    check_lab_config(load_config(LabConfig, EXAMPLES / "smollm2-lab.yaml"))  # its world needs the model


def _tiny(out: Path, **changes) -> LabConfig:
    config = load_config(LabConfig, None, {
        "output_dir": str(out), "reference.steps": 2, "reference.hidden_size": 16, "reference.num_heads": 2,
        "reference.num_layers": 1, "workers": 1, "eval_samples": 2, "betas": [0.1], "seeds": [0],
        "methods": [{"label": "DPO", "loss": "sigmoid"}],
        "regimes": [{"name": "t", "n_pairs": 16, "max_steps": 1, "batch_size": 8, "eval_every": 1}]})
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize("changes, message", [
    ({"betas": [-0.1]}, r"^option betas\[0\] must be > 0, got -0.1$"),
    ({"seeds": ["a", "b"]}, r"^option seeds\[0\]: expected int, got 'a'$"),
    ({"seeds": []}, r"^option seeds: no seeds: nothing to run"),
    ({"common_sqrt_kl": -1.0}, r"^option common_sqrt_kl must be >= 0, got -1.0$"),
    ({"reference": dataclasses.replace(LabConfig().reference, steps=0)}, r"^option reference.steps must be > 0"),
    ({"world": dataclasses.replace(LabConfig().world, kind="junk")},
     r"^option world: world kind 'junk' needs junk_words >= 1"),
])
def test_run_lab_refuses_before_writing(changes, message, tmp_path):
    out = tmp_path / "lab"
    with pytest.raises(InputError, match=message):
        run_lab(_tiny(out, **changes), progress=None)
    assert not out.exists()


def test_empty_methods_in_python_is_the_default_sweep(tmp_path):
    """Only a list written out empty (YAML, command line) is refused; a LabConfig's default [] is the default
    sweep, as before."""
    config = check_lab_config(_tiny(tmp_path, methods=[]))
    check_runs(config, load_world(config))


def test_report_beta_defaults_to_the_first_beta(tmp_path):
    assert check_lab_config(_tiny(tmp_path, betas=[0.05, 0.1], report_beta=0.3)).report_beta == 0.05
