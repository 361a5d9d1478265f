"""`isdaa lab` / `isdaa demo` check the whole config before any preparation: a bad method, β, seed, regime,
world or reference setting is exit 2 with one line naming the option, where it was set and the value; no SFT
reference is fitted, no pair sampled and nothing is written (the output directory does not exist, or an existing
one is unchanged)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from isdaa.cli import main

REPO = Path(__file__).resolve().parents[2]
SMOLLM2_LAB = REPO / "examples" / "smollm2-lab.yaml"

# A sweep that prepares in seconds: were a check to come after the preparation (as it once did), the test would see
# reference/, pairs/ and prepared.json written instead of a refusal.
TINY = ["--reference.steps", "2", "--reference.hidden_size", "16", "--reference.num_heads", "2",
        "--reference.num_layers", "1", "--reference.batch_size", "16", "--workers", "1", "--eval_samples", "2",
        "--regimes", "[{name: t, n_pairs: 16, max_steps: 1, batch_size: 8, eval_every: 1}]"]


def _tree(path: Path) -> dict:
    """Every file under `path` with a hash of its bytes (nothing: {})."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _refused(capsys, args: list[str]) -> str:
    """Run `isdaa ...`, expect exit 2 and one line on stderr, no traceback; return that line."""
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


CLI_CASES = {
    "negative_beta": (["--betas", "[-0.1]"], "error: command line: option betas[0] must be > 0, got -0.1"),
    "no_methods": (["--methods", "[]"], "error: command line: option methods: no methods: nothing to run"),
    "no_regimes": (["--regimes", "[]"], "error: command line: option regimes: no regimes: nothing to run"),
    "no_betas": (["--betas", "[]"], "error: command line: option betas: no betas: nothing to run"),
    "seed_not_an_integer": (["--seeds", "[a, b]"], "error: command line: option seeds[0]: expected int, got 'a'"),
    "seed_twice": (["--seeds", "[0, 0]"], "option seeds[1]: 0 repeats seeds[0]"),
    "beta_twice": (["--betas", "[0.1, 0.1]"], "option betas[1]: 0.1 repeats betas[0]"),
    "world": (["--world.p_stop", "1.5"], "error: command line: option world: p_stop must be in (0, 1), got 1.5"),
    "reference_heads": (["--reference.num_heads", "3"],
                        "option reference.hidden_size must be a multiple of reference.num_heads, got 16 and 3"),
    "pairs_temperature": (["--pairs.label_temperature", "0"], "option pairs.label_temperature must be > 0"),
    "workers": (["--workers", "0"], "option workers must be >= 1, got 0"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
@pytest.mark.parametrize("command", ["lab", "demo"])
def test_bad_lab_option_refused_before_anything_is_written(case, command, tmp_path, capsys):
    extra, expected = CLI_CASES[case]
    out = tmp_path / "lab"
    err = _refused(capsys, [command, "--output_dir", str(out), *TINY, *extra])
    assert expected in err
    assert not out.exists()


YAML_CASES = {
    "unknown_loss": ("methods: [{label: x, loss: dpoo}]",
                     "option methods[0] (x): objective.loss: unknown value 'dpoo' (did you mean 'rdpo'?)"),
    "unknown_weighting": ("methods: [{label: x, weighting: iss}]",
                          "option methods[0] (x): objective.weighting: unknown value 'iss' (did you mean 'is'?)"),
    "no_methods": ("methods: []", "option methods: no methods: nothing to run (list at least one"),
    "same_run_directory": ("methods: [{label: a b, loss: sigmoid}, {label: a_b, loss: ipo}]",
                           "option methods[1] (a_b): its run directory 'a_b' is that of methods[0] too"),
    "negative_beta": ("betas: [-0.1]", "option betas[0] must be > 0, got -0.1"),
    "seed_not_an_integer": ("seeds: [a, b]", "option seeds[0]: expected int, got 'a'"),
    # each run's objective as the run builds it: a regime's objective key with a method's hyper-parameters
    "run_objective": ("methods: [{label: R, loss: rdpo, hparams: {alpha: 0.01}}]\n"
                      "regimes: [{name: r, n_pairs: 16, max_steps: 1, batch_size: 8, objective.loss: ipo}]",
                      "run r / R / beta 0.1: option objective.hparams: loss 'ipo' got unknown hyper-parameter"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_lab_yaml_names_the_file(case, tmp_path, capsys):
    text, expected = YAML_CASES[case]
    config = tmp_path / "lab.yaml"
    config.write_text(f"betas: [0.1]\nseeds: [0]\n{text}\n", encoding="utf-8")
    out = tmp_path / "lab"
    err = _refused(capsys, ["lab", "--config", str(config), "--output_dir", str(out), *TINY[:-2]])
    assert err.startswith("error: ") and expected in err
    if "run r" not in expected:
        assert f"{config}: option " in err
    assert not out.exists()


def test_refusal_leaves_an_existing_lab_directory_unchanged(tmp_path, capsys):
    """A lab directory from an earlier sweep (here a stand-in) is neither cleared (--overwrite) nor written."""
    out = tmp_path / "lab"
    (out / "runs").mkdir(parents=True)
    (out / "prepared.json").write_text('{"key": "k"}', encoding="utf-8")
    (out / "runs" / "record.json").write_text("{}", encoding="utf-8")
    before = _tree(out)
    _refused(capsys, ["lab", "--output_dir", str(out), "--overwrite", "true", *TINY, "--betas", "[-0.1]"])
    assert _tree(out) == before


def test_model_world_checked_before_the_model_loads(tmp_path, capsys):
    """examples/smollm2-lab.yaml with a model directory that does not exist: the sweep's options are checked
    first (a bad β is refused whether or not the model is on this machine), then the missing model directory is
    itself one line."""
    out, missing = tmp_path / "lab", tmp_path / "no-model"
    for extra, expected in [
        (["--betas", "[-0.1]"], "error: command line: option betas[0] must be > 0, got -0.1"),
        (["--seeds", "[a, b]"], "error: command line: option seeds[0]: expected int, got 'a'"),
        (["--methods", "[]"], "error: command line: option methods: no methods: nothing to run"),
        ([], f"error: command line: option world.model: {missing} is not a model directory (no config.json)"),
    ]:
        err = _refused(capsys, ["lab", "--config", str(SMOLLM2_LAB), "--output_dir", str(out),
                                "--world.model", str(missing), *extra])
        assert err.startswith(expected), err
        assert not out.exists()
