"""Everything a training run checks before it writes a byte: config names, model source, tokenizer,
data (every row), and the output directory (resume / finished / overwrite / writable / not in use by another
run; whether a resume may continue what is there: `resume.py`).

One run per output directory: the main process holds an exclusive lock on `<output_dir>/.lock`
(`DirectoryLock`) from before it touches anything there to the end of the run; a second run on the
directory exits 2 naming the process that holds it, and writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import broadcast_object_list

from isdaa.config import ObjectiveConfig, TrainConfig
from isdaa.data import load_rows, tokenize_rows
from isdaa.errors import InputError
from isdaa.modeling.loading import check_lora_targets, check_model_source, load_tokenizer, model_identity
from isdaa.objectives import Objective, ObjectiveArgumentError
from isdaa.runtime import DirectoryLock, process_state
from isdaa.training import checkpoint as ckpt
from isdaa.training.model_card import data_sha256
from isdaa.training.parallel import check_distributed
from isdaa.training.resume import RunShape, Start, plan_start


@dataclass
class RunInputs:
    """Everything a run reads, validated: the objective built from its config, the tokenizer, the tokenised
    train / eval examples (and how many rows were dropped), where it writes, the model's identity for the
    reference cache, the SHA-256 of the training data; the checkpoint to resume from, or the state of a finished
    run's `final/` (set by `prepare_output_dir`)."""

    objective: Objective
    tokenizer: object
    train: list
    eval: list
    dropped: int
    run_dir: Path
    ref_cache_dir: Path
    model_id: str
    data_sha256: str | None = None
    resume_from: Path | None = None
    finished: dict | None = None


def _examples(path, tokenizer, cfg: TrainConfig):
    """The tokenised examples of a data file, and how many rows were dropped."""
    rows = load_rows(path, extra_columns=tuple(cfg.data.extra_columns))
    examples, dropped = tokenize_rows(
        rows, tokenizer, max_length=cfg.data.max_length, max_prompt_length=cfg.data.max_prompt_length, source=str(path)
    )
    return examples, dropped


def build_objective(objective: ObjectiveConfig) -> Objective:
    """The run's objective, built once from its config: a bad loss name, weighting or hyper-parameter is an
    InputError `option objective.<field>: ...`."""
    try:
        return Objective.from_config(objective)
    except ObjectiveArgumentError as exc:
        raise InputError(f"option objective.{exc.argument}: {exc}") from None


def check_lora_layers(config: TrainConfig) -> None:
    """`lora.layers` needs LoRA; `lora.cache_trunk` needs `lora.layers` and no torch.compile (InputError)."""
    lora = config.lora
    if lora.layers and not lora.enabled:
        raise InputError("option lora.layers: only with lora.enabled true")
    if lora.cache_trunk and not lora.layers:
        raise InputError("option lora.cache_trunk: needs lora.layers > 0 (the top layers that train; the trunk "
                         "below them is cached)")
    if lora.cache_trunk and config.model.compile:
        raise InputError("option lora.cache_trunk: not with model.compile (the cache runs slices of the model)")


def prepare_inputs(config: TrainConfig) -> RunInputs:
    """Check the config, the model source, the tokenizer and every data row; nothing is written.
    Raises `InputError` (one line naming the option or the row) on the first problem."""
    objective = build_objective(config.objective)
    check_distributed(config)
    if config.data.train_file is None:
        raise InputError("option data.train_file: required (a .jsonl/.json/.parquet file or a datasets directory)")
    if config.data.max_prompt_length >= config.data.max_length:
        raise InputError(
            f"option data.max_prompt_length: must be < data.max_length ({config.data.max_prompt_length} >= {config.data.max_length})"
        )
    if config.model.name_or_path is None and config.model.init is None:
        raise InputError("option model.name_or_path: required (a local model directory or .gguf file), or set model.init")
    check_model_source(config.model)
    if config.lora.enabled:
        check_lora_targets(config.model, config.lora)
    check_lora_layers(config)
    tokenizer = load_tokenizer(config.model)
    train, dropped = _examples(config.data.train_file, tokenizer, config)
    evals = _examples(config.data.eval_file, tokenizer, config)[0] if config.data.eval_file else []
    run_dir = Path(config.output_dir)
    return RunInputs(
        objective=objective, tokenizer=tokenizer, train=train, eval=evals, dropped=dropped, run_dir=run_dir,
        ref_cache_dir=Path(config.ref_cache_dir) if config.ref_cache_dir else run_dir / "ref-cache",
        model_id=model_identity(config.model, config.seed), data_sha256=data_sha256(config.data.train_file),
    )


def _check_writable(path: Path, option: str = "output_dir") -> None:
    """InputError unless `path` can be created (or written) under its nearest existing ancestor."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"option {option}: {path} cannot be created ({probe} is a file, not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"option {option}: {path} is not writable (no write permission on {probe})")


def _check_locations(config: TrainConfig, inputs: RunInputs, num_processes: int) -> None:
    """The output and cache directories can be written, and the data holds one global batch at least."""
    run_dir = inputs.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"option output_dir: {run_dir} exists and is not a directory")
    _check_writable(run_dir)
    if inputs.ref_cache_dir.exists() and not inputs.ref_cache_dir.is_dir():
        raise InputError(f"option ref_cache_dir: {inputs.ref_cache_dir} exists and is not a directory")
    _check_writable(inputs.ref_cache_dir, "ref_cache_dir" if config.ref_cache_dir else "output_dir")
    world = config.batch_size * config.grad_accum * num_processes
    if len(inputs.train) < world:
        raise InputError(
            f"{config.data.train_file}: {len(inputs.train)} usable pairs, fewer than one global batch "
            f"(batch_size x grad_accum x processes = {world})"
        )


def _remove_tracker_logs(run_dir: Path) -> None:
    """TensorBoard's files of an earlier run (accelerate writes them under `<run>/<run name>/`): event files and
    `hparams.yml`, then the folders they leave empty; anything else there is kept."""
    logs = run_dir / run_dir.name
    if not logs.is_dir():
        return
    for path in sorted(logs.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() and (path.name.startswith("events.out.tfevents.") or path.name == "hparams.yml"):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(logs.iterdir()):
        logs.rmdir()


def remove_run_outputs(run_dir: Path) -> None:
    """Delete what an earlier isdaa run wrote in `run_dir` (`final/` first, so that a crash midway leaves a run
    that is consistent, only shorter); files of other origin, the lock and the reference cache (keyed: stale
    entries are never hit) are kept."""
    for name in ("final", "final.tmp"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    ckpt.remove_all(run_dir)
    for name in ("best", "best.tmp", "plots"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    _remove_tracker_logs(run_dir)
    for name in ("summary.md", "metrics.jsonl", "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)


def _clear_for_fresh_start(config: TrainConfig, run_dir: Path, is_main_process: bool) -> None:
    """A fresh start in a non-empty directory: refused without `overwrite`, else the outputs of the earlier
    run are removed (`remove_run_outputs`)."""
    if not config.overwrite:
        why = (
            "holds checkpoints but resume is 'never'" if ckpt.latest_checkpoint(run_dir) is not None
            else "is not empty and holds no checkpoint to resume"
        )
        raise InputError(
            f"option output_dir: {run_dir} {why}; pass --overwrite to start over there, or choose another directory"
        )
    if is_main_process:
        remove_run_outputs(run_dir)


def _lock(run_dir: Path, state) -> DirectoryLock:
    """The lock of `run_dir`, taken by the main process (creating the directory); InputError on every process
    when another run holds it."""
    lock, problem = DirectoryLock(run_dir), None
    if state.is_main_process:
        try:
            holder = lock.acquire()
        except OSError as exc:
            holder, problem = None, f"cannot be locked ({lock.path}: {exc.strerror})"
        if holder is not None:
            problem = f"is in use by another isdaa run ({holder}); wait for it to end or choose another output_dir"
    if state.num_processes > 1:
        problem = broadcast_object_list([problem])[0]
    if problem is not None:
        raise InputError(f"option output_dir: {run_dir} {problem}")
    return lock


def _has_outputs(run_dir: Path) -> bool:
    """Whether `run_dir` holds anything but the lock file."""
    return run_dir.is_dir() and any(p.name != DirectoryLock.NAME for p in run_dir.iterdir())


def _start(config: TrainConfig, inputs: RunInputs, state) -> Start:
    """Decide fresh start / resume / finished (`resume.plan_start`), then ready the directory for it: torn
    checkpoints of a resumed run reported and removed, an earlier run's outputs removed for a fresh start
    (with `overwrite`), the directory created and writable. A finished run: nothing is touched."""
    run_dir = inputs.run_dir
    shape = RunShape(len(inputs.train), state.num_processes, inputs.data_sha256)
    start = plan_start(config, run_dir, shape)
    if start.finished is not None:
        return start
    if start.checkpoint is not None and config.resume == "auto" and state.is_main_process:
        for p in ckpt.remove_torn(run_dir):
            print(f"isdaa: ignored an incomplete checkpoint {p} (a crash while writing it); removed")
    if start.checkpoint is None and _has_outputs(run_dir):
        _clear_for_fresh_start(config, run_dir, state.is_main_process)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as exc:
        raise InputError(f"option output_dir: cannot write in {run_dir} ({exc.strerror})") from None
    return start


def prepare_output_dir(config: TrainConfig, inputs: RunInputs) -> DirectoryLock:
    """Lock the directory, decide fresh start vs resume vs finished (`inputs.resume_from`, `inputs.finished`),
    then create it. InputError if the directory is in the way or in use, or a resume would mix two runs (then it
    is left as it was). Returns the lock: release it (`with`) when the run ends."""
    state = process_state()
    run_dir = inputs.run_dir
    _check_locations(config, inputs, state.num_processes)
    existed = run_dir.is_dir()
    lock = _lock(run_dir, state)
    try:
        start = _start(config, inputs, state)
    except BaseException:
        lock.release()
        if not existed and state.is_main_process:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # created for the lock only, so left as it was: absent
        raise
    inputs.resume_from, inputs.finished = start.checkpoint, start.finished
    if state.is_main_process:
        for note in start.notes:
            print(note)
        if inputs.resume_from is not None:
            print(f"isdaa: resuming from {inputs.resume_from} (step {ckpt.read_state(inputs.resume_from).get('step')})")
    return lock
