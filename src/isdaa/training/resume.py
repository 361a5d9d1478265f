"""How a run starts in an output directory that holds an earlier run: resume it, say it is finished, or refuse.

A resume continues one trajectory, so whatever defines it must be what the checkpoint was trained with. Each
checkpoint records its settings: `config.yaml` (the resolved config, as the run directory's) and, in its state
file, the number of processes and the SHA-256 of the training data; `final/run_state.json` records the step
`final/` was written at and the run's planned length. Before a run resumes, `plan_start` compares them with the
new config and refuses (`InputError`, nothing written) when an option outside `FREE_OPTIONS` changed, or when
the new length ends before the step the run has reached. A run whose `final/` is at its (new) length is finished:
nothing is trained or written. Options that only decide when things happen, what is watched or how the same
computation runs may change (`FREE_OPTIONS`, docs/reliability.md); `max_steps` / `epochs` may grow: the run
continues from its newest checkpoint, and the learning-rate schedule from there on is the new length's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from isdaa.config import TrainConfig, config_yaml, option_help, read_yaml
from isdaa.errors import InputError
from isdaa.training import checkpoint as ckpt
from isdaa.training.final_model import read_final_state

SETTINGS_FILE = "config.yaml"  # in each checkpoint: the config it was trained with

# Options a resumed run may change. None of them changes what the policy becomes at a given step: when things
# are logged, evaluated and saved and how many checkpoints are kept; what the monitor watches and when it stops
# the run; the held-out set; progress, trackers, plots; and how the same computation runs (threads, memory
# savers, the reference log-probs' cache, prompt sharing: equal up to float rounding). Every other option
# (objective, optimizer, schedule, training data and truncation, model, tokenizer, LoRA, precision, seed, batch
# size, accumulation, distribution) defines the trajectory, as do the number of processes and the data's bytes.
FREE_OPTIONS = frozenset({
    "output_dir", "resume", "overwrite",
    "log_every", "eval_every", "save_every", "keep_last",
    "eval_batch_size", "data.eval_file", "data.extra_columns",
    "progress", "trackers", "plots", "num_threads", "max_bad_steps",
    "precompute_ref", "ref_cache_dir", "prompt_sharing", "model.gradient_checkpointing", "model.compile",
    "model.trust_remote_code",
})
FREE_SECTIONS = ("monitor.",)
LENGTH_OPTIONS = frozenset({"max_steps", "epochs"})  # may grow; never below the step reached
MAX_LISTED = 8  # changed options named in one message at most
_UNSET = object()


@dataclass
class Start:
    """What a run does in its directory: resume from `checkpoint`, or nothing (`finished`: the state of its
    `final/`), or (neither) start fresh; `notes`: lines for the main process to print."""

    checkpoint: Path | None = None
    finished: dict | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunShape:
    """What the new run is, beyond its config: usable training pairs, processes, the training data's SHA-256."""

    train_pairs: int
    processes: int
    data_sha256: str | None


def steps_per_epoch(config: TrainConfig, train_pairs: int, processes: int) -> int:
    """Optimizer steps in one pass over the data (one global batch each)."""
    return train_pairs // (config.batch_size * config.grad_accum * processes)


def planned_steps(config: TrainConfig, train_pairs: int, processes: int) -> int:
    """The run's length: `max_steps`, else `epochs` passes."""
    return config.max_steps or math.ceil(config.epochs * steps_per_epoch(config, train_pairs, processes))


def checkpoint_record(shape: RunShape) -> dict:
    """What a checkpoint's state file adds to the loop state, for the check of a later resume."""
    return {"processes": shape.processes, "data_sha256": shape.data_sha256}


def write_settings(directory: Path, config: TrainConfig) -> None:
    """The config a checkpoint was trained with, into (the temporary directory of) that checkpoint."""
    (Path(directory) / SETTINGS_FILE).write_text(config_yaml(config), encoding="utf-8")


def plan_start(config: TrainConfig, run_dir: Path, shape: RunShape) -> Start:
    """Fresh start, resume or finished, for `config` in `run_dir`; InputError (nothing written) when resuming
    would mix two runs or the new length ends before the step reached. `overwrite` / `resume: never`: fresh."""
    if config.overwrite and config.resume not in ("auto", "never"):
        raise InputError(f"options overwrite and resume: --overwrite starts a new run, --resume {config.resume} "
                         "continues one; pass only one of them")
    if config.overwrite or config.resume == "never":
        return Start()
    if config.resume != "auto":
        return _explicit(config, Path(config.resume), shape)
    latest = ckpt.latest_checkpoint(run_dir)
    final = read_final_state(run_dir)
    if final is not None and (latest is None or _step(latest) <= final["step"]):
        return _after_final(config, run_dir, latest, final, shape)
    if latest is not None:
        notes = _check_settings(config, latest, run_dir, shape)
        _check_length(config, shape, _step(latest), f"where {run_dir}'s newest checkpoint ({latest}) is")
        return Start(checkpoint=latest, notes=notes)
    return Start()


def _explicit(config: TrainConfig, path: Path, shape: RunShape) -> Start:
    """`resume: <checkpoint>`: it must be complete, trained with the same settings, and not past the new end."""
    if not ckpt.is_complete(path):
        raise InputError(f"option resume: {path} is not a complete checkpoint (expected a checkpoint directory with "
                         f"{ckpt.STATE_FILE}, or resume: auto | never)")
    notes = _check_settings(config, path, Path(config.output_dir), shape, explicit=True)
    _check_length(config, shape, _step(path), f"where the checkpoint {path} is",
                  "ask for {reached} steps or more to continue from it, or leave resume out to start a new run")
    return Start(checkpoint=path, notes=notes)


def _after_final(config: TrainConfig, run_dir: Path, latest: Path | None, final: dict, shape: RunShape) -> Start:
    """A directory whose `final/` is the newest state: finished at the new length, or continued from its newest
    checkpoint when the length grew."""
    notes = _check_settings(config, latest, run_dir, shape)
    reached = final["step"]
    _check_length(config, shape, reached, f"where {run_dir} ended (final model in {run_dir / 'final'})")
    total = planned_steps(config, shape.train_pairs, shape.processes)
    if total == reached:
        return Start(finished=final, notes=notes + [
            f"isdaa: {run_dir} is finished (step {reached} of {total}; final model in {run_dir / 'final'}); nothing "
            "to do: raise max_steps or epochs to train further, or pass --overwrite to start over"])
    if latest is None:
        raise InputError(f"option {_length(config, total)} continues {run_dir} past step {reached}, where it ended, "
                         "but the run kept no checkpoint to continue from (save_every 0 keeps none); pass "
                         "--overwrite to train again from the start, or choose another output_dir")
    at = _step(latest)
    again = f" (steps {at + 1}-{reached} are trained again)" if at < reached else ""
    return Start(checkpoint=latest, notes=notes + [
        f"isdaa: {run_dir} ended at step {reached}; {_length(config, total, ' ')} continues it from its newest "
        f"checkpoint, step {at}{again}; final/ is kept until the new end replaces it"])


def _step(checkpoint: Path) -> int:
    return int(ckpt.read_state(checkpoint)["step"])


def _length(config: TrainConfig, total: int, sep: str = ": ") -> str:
    """The option that sets the run's length and its value: `max_steps: 6` or `epochs: 2 (64 steps)`."""
    return f"max_steps{sep}{config.max_steps}" if config.max_steps else f"epochs{sep}{config.epochs:g} ({total} steps)"


def _check_length(config: TrainConfig, shape: RunShape, reached: int, where: str,
                  advice: str = "ask for {reached} steps or more to continue it, pass --overwrite to start over, or "
                                "choose another output_dir") -> None:
    """InputError when the new length ends before `reached`, the step the run got to (`where`: what is there)."""
    total = planned_steps(config, shape.train_pairs, shape.processes)
    if total < reached:
        raise InputError(f"option {_length(config, total)} ends before step {reached}, {where}; "
                         f"{advice.format(reached=reached)}")


def _check_settings(config: TrainConfig, checkpoint: Path | None, run_dir: Path, shape: RunShape, *,
                    explicit: bool = False) -> list[str]:
    """InputError naming every trajectory option (and the processes, the data's bytes) that differs from what
    `checkpoint` (else the run directory's `config.yaml`) was trained with; a warning (to print) when neither
    records them."""
    saved, source = _saved_settings(checkpoint, run_dir)
    where = checkpoint if checkpoint is not None else run_dir
    unknown = [f"isdaa: warning: {where} records no settings (written by an older isdaa); they could not be "
               "compared with this run's"] if saved is None else []
    changes = setting_changes(saved, _tree(config)) if saved is not None else []
    state = ckpt.read_state(checkpoint) if checkpoint is not None else {}
    if state.get("processes") not in (None, shape.processes):
        changes.append(f"processes {state['processes']} -> {shape.processes}")
    changes = _data_changes(changes, state.get("data_sha256"), shape.data_sha256)
    if not changes:
        return unknown
    more = len(changes) - MAX_LISTED
    listed = "; ".join(changes[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
    own = f"continue it with its own settings ({source})" if source else "continue it with its own settings"
    if explicit:
        raise InputError(f"option resume: checkpoint {checkpoint} was trained with other settings: {listed}; resuming "
                         f"from it would mix two runs: {own}, or leave resume out to start a new run")
    raise InputError(f"option output_dir: {run_dir} holds a run trained with other settings: {listed}; resuming it "
                     f"would mix two runs: {own}, pass --overwrite to start over there, or choose another output_dir")


def _data_changes(changes: list[str], recorded: str | None, current: str | None) -> list[str]:
    """The training data is its bytes: the same bytes under another path are no change; other bytes under the
    same path are one."""
    if not recorded or not current:
        return changes
    if recorded == current:
        return [c for c in changes if not c.startswith("data.train_file ")]
    if any(c.startswith("data.train_file ") for c in changes):
        return changes
    return [*changes, f"the bytes of data.train_file (SHA-256 {recorded[:12]}… -> {current[:12]}…)"]


def _saved_settings(checkpoint: Path | None, run_dir: Path) -> tuple[dict | None, Path | None]:
    """The settings a checkpoint was trained with (its `config.yaml`; for a checkpoint of an older isdaa, or a
    run without checkpoints, the run directory's), and the file they came from."""
    candidates = [checkpoint / SETTINGS_FILE] if checkpoint is not None else []
    if checkpoint is None or checkpoint.parent.resolve() == ckpt.checkpoint_dir(run_dir).resolve():
        candidates.append(Path(run_dir) / "config.yaml")
    for path in candidates:
        if path.is_file():
            return read_yaml(path), path
    return None, None


def setting_changes(saved: dict, new: dict) -> list[str]:
    """`key old -> new` for every trajectory option that differs (keys of dict-valued options one by one; an
    option the saved config lacks, from an older isdaa, counts as its default)."""
    defaults = _tree(TrainConfig())
    changes = []
    for key in (row.key for row in option_help(TrainConfig)):
        if key in FREE_OPTIONS or key in LENGTH_OPTIONS or key.startswith(FREE_SECTIONS):
            continue
        old = _lookup(saved, key)
        changes += _differences(key, _lookup(defaults, key) if old is _UNSET else old, _lookup(new, key))
    return changes


def _tree(config: TrainConfig) -> dict:
    """The config as `config.yaml` holds it (read back), so that both sides of a comparison have YAML's types."""
    return yaml.safe_load(config_yaml(config))


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def _differences(key: str, old, new) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for k in sorted(set(old) | set(new), key=str)
                for change in _differences(f"{key}.{k}", old.get(k, _UNSET), new.get(k, _UNSET))]
    return [] if old == new else [f"{key} {_show(old)} -> {_show(new)}"]


def _show(value) -> str:
    if value is _UNSET:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value)
