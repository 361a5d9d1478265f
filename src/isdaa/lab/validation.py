"""A lab config checked whole before the sweep prepares or writes anything: no SFT reference is fitted, no pair
sampled and nothing written for a config that would fail later.

- `check_lab_config`: the sweep's lists and numbers — methods and regimes (`isdaa.lab.regimes`: each method's
  objective is built by `isdaa.objectives`, as `isdaa train` builds it), every β as an `objective.beta` and every
  seed as a `seed` would be checked (type and limit, through the config machinery), no repeated β or seed,
  workers, the evaluation size, the reference's and the pairs' settings;
- `load_world`: the world (`isdaa.lab.worlds`; a model world's files and scorers, not its weights), its ValueError
  an InputError naming the option `world`;
- `check_runs`: every run's TrainConfig and objective, built as the sweep will build them (`isdaa.lab.spec`);
- `check_loaded` (what `isdaa.lab.load_lab_config` runs): all of them on a config just read from a file and the
  command line, each error starting with where the option was set; an empty `methods` or `regimes` list written
  out is refused there (left out: the defaults; an empty list in a LabConfig built in Python is the default too).
`isdaa.lab.sweep.run_lab` runs the first three again (a LabConfig built in Python). Each problem is an
`InputError` of one line naming the option and the value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from isdaa.config import LabConfig, ObjectiveConfig, TrainConfig, load_config, read_yaml
from isdaa.config.fields import non_negative, positive
from isdaa.errors import InputError
from isdaa.lab.protocol import LabWorld, Prepared
from isdaa.lab.regimes import resolve_methods, resolve_regimes
from isdaa.lab.spec import build_specs, slug
from isdaa.lab.worlds import world_for
from isdaa.training.setup import build_objective

__all__ = ["LabOptionError", "check_lab_config", "check_loaded", "given_options", "load_world", "check_runs"]

COMMAND_LINE = "command line"

# An explicitly empty list, and what to write instead.
EMPTY_LISTS = {
    "methods": "list at least one, e.g. [{label: DPO, loss: sigmoid}], or leave the key out for the default sweep",
    "regimes": "list at least one, e.g. [{name: few_pairs, n_pairs: 1000, max_steps: 1000}], or leave the key "
               "out for the default regimes",
    "betas": "list at least one, e.g. [0.1]",
    "seeds": "list at least one, e.g. [0]",
}


class LabOptionError(InputError):
    """A problem with the top-level lab option `option` (methods, betas, world, ...); the message names it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# ----------------------------------------------------------------------------- lists
def _empty(option: str) -> LabOptionError:
    return LabOptionError(option, f"option {option}: no {option}: nothing to run ({EMPTY_LISTS[option]})")


def _each_as(option: str, values: list, cls, key: str) -> None:
    """Every value of the list `option` checked as the config key `key` of `cls` would be (type and limit);
    the error names `option[i]` instead of `key`."""
    for i, value in enumerate(values):
        try:
            load_config(cls, None, {key: value})
        except InputError as exc:
            raise LabOptionError(option, f"option {option}[{i}]{str(exc).removeprefix(f'option {key}')}") from None


def _no_repeats(option: str, values: list, same) -> None:
    """LabOptionError when two values of `option` are the same run (compared as `same(value)`)."""
    seen = {}
    for i, value in enumerate(values):
        if same(value) in seen:
            raise LabOptionError(option, f"option {option}[{i}]: {value!r} repeats {option}[{seen[same(value)]}] "
                                         f"(each value is one set of run directories)")
        seen[same(value)] = i


def _check_methods(methods: list) -> None:
    """`resolve_methods` (keys, values, each objective built) and distinct run directories."""
    try:
        resolved = resolve_methods(methods)
    except InputError as exc:
        raise LabOptionError("methods", str(exc)) from None
    dirs = {}
    for i, m in enumerate(resolved):
        d = slug(m["label"])
        if d in dirs:
            raise LabOptionError("methods", f"option methods[{i}] ({m['label']}): its run directory {d!r} is "
                                            f"that of methods[{dirs[d]}] too; choose another label")
        dirs[d] = i


def _check_lists(config: LabConfig) -> None:
    _check_methods(config.methods)
    try:
        resolve_regimes(config.regimes)
    except InputError as exc:
        raise LabOptionError("regimes", str(exc)) from None
    for option in ("betas", "seeds"):
        if not getattr(config, option):
            raise _empty(option)
    _each_as("betas", config.betas, ObjectiveConfig, "beta")
    _no_repeats("betas", config.betas, float)
    _each_as("seeds", config.seeds, TrainConfig, "seed")
    _no_repeats("seeds", config.seeds, int)


# ----------------------------------------------------------------------------- numbers
def _check_limits(config: LabConfig) -> None:
    """The sweep's own numbers and the reference's and pairs' settings (the limits of `isdaa.config.fields`)."""
    if config.workers < 1:
        raise LabOptionError("workers", f"option workers must be >= 1, got {config.workers}")
    if config.eval_samples < 2:
        raise LabOptionError("eval_samples", f"option eval_samples must be >= 2, got {config.eval_samples}")
    limits = [("common_sqrt_kl", config.common_sqrt_kl, non_negative()),
              ("pairs.label_temperature", config.pairs.label_temperature, positive())]
    ref = config.reference
    limits += [(f"reference.{f.name}", getattr(ref, f.name), positive())
               for f in dataclasses.fields(ref) if f.name != "seed"]
    for key, value, check in limits:
        problem = check.problem(key, value)
        if problem is not None:
            raise LabOptionError(key.split(".")[0], f"option {problem}")
    if ref.hidden_size % ref.num_heads:
        raise LabOptionError("reference", f"option reference.hidden_size must be a multiple of reference.num_heads, "
                                          f"got {ref.hidden_size} and {ref.num_heads}")


def check_lab_config(config: LabConfig) -> LabConfig:
    """`config` checked (LabOptionError, one line, on the first problem); its report_beta defaults to the first β."""
    _check_lists(config)
    _check_limits(config)
    if config.report_beta not in [float(b) for b in config.betas]:
        config = dataclasses.replace(config, report_beta=float(config.betas[0]))
    return config


# ----------------------------------------------------------------------------- the world and the runs
def load_world(config: LabConfig) -> LabWorld:
    """The config's world (`world_for`); LabOptionError naming `world` (the controlled world's ValueError too)."""
    try:
        return world_for(config.world)
    except InputError as exc:
        raise LabOptionError("world", str(exc)) from None
    except ValueError as exc:
        raise LabOptionError("world", f"option world: {exc}") from None


def _planned(config: LabConfig, out: Path) -> Prepared:
    """A preparation of `config` with the paths it will have and nothing in them: what `build_specs` needs to
    build every run's TrainConfig before anything exists."""
    files = {r["name"]: str(out / "pairs" / f"{r['name']}.jsonl") for r in resolve_regimes(config.regimes)}
    return Prepared(reference={"path": str(out / "reference")},
                    pairs={int(s): {"files": files} for s in config.seeds}, ref_gold={})


def check_runs(config: LabConfig, world: LabWorld) -> None:
    """Every run's TrainConfig (`build_specs`) and its objective (`isdaa.objectives`, as the run will build it),
    before anything is prepared; InputError naming the run."""
    for spec in build_specs(config, Path(config.output_dir), _planned(config, Path(config.output_dir)), world):
        try:
            build_objective(spec.train.objective)
        except InputError as exc:
            raise InputError(f"run {spec.regime} / {spec.method} / beta {spec.beta}: {exc}") from None


# ----------------------------------------------------------------------------- a config as read
def given_options(path, overrides) -> dict[str, str]:
    """Top-level option -> where it was set: the command line (dotted `overrides`, a dict or (key, value) pairs)
    over the YAML file `path`."""
    where = {key: str(path) for key in read_yaml(path)} if path else {}
    items = overrides.items() if isinstance(overrides, dict) else (overrides or [])
    where.update({str(key).split(".")[0]: COMMAND_LINE for key, _ in items})
    return where


def check_loaded(config: LabConfig, where: dict[str, str], source) -> None:
    """A config as read (`where`: `given_options`) checked whole: an empty methods / regimes list written out,
    `check_lab_config`, `load_world`, `check_runs`; InputError "<where>: option ..." (`source` when the option
    was not given; a run's error names the run)."""
    try:
        for option in ("methods", "regimes"):
            if option in where and not getattr(config, option):
                raise _empty(option)
        config = check_lab_config(config)
        world = load_world(config)
    except LabOptionError as exc:
        raise InputError(f"{where.get(exc.option, source)}: {exc}") from None
    check_runs(config, world)
