"""Everything a training run checks before it writes a byte: config names, model source, tokenizer,
data (every row), and the output directory (resume / overwrite / writable / not in use by another run).

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
from isdaa.training.parallel import check_distributed

RUN_OUTPUTS = ("checkpoints", "final", "best", "plots", "summary.md", "metrics.jsonl", "config.yaml", "ref-cache")


@dataclass
class RunInputs:
    """Everything a run reads, validated: the objective built from its config, the tokenizer, the tokenised
    train / eval examples (and how many rows were dropped), where it writes, the model's identity for the
    reference cache, the checkpoint to resume from (set by `prepare_output_dir`)."""

    objective: Objective
    tokenizer: object
    train: list
    eval: list
    dropped: int
    run_dir: Path
    ref_cache_dir: Path
    model_id: str
    resume_from: Path | None = None


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
        model_id=model_identity(config.model, config.seed),
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


def _resume_point(config: TrainConfig, run_dir: Path, is_main_process: bool) -> Path | None:
    """The checkpoint to resume from: `resume` names one, or (auto) the newest complete one of the run,
    after torn ones are reported and removed; None for a fresh start."""
    if config.resume not in ("auto", "never"):
        path = Path(config.resume)
        if not ckpt.is_complete(path):
            raise InputError(
                f"option resume: {path} is not a complete checkpoint (expected a checkpoint directory with "
                f"{ckpt.STATE_FILE}, or resume: auto | never)"
            )
        return path
    if config.resume == "auto" and ckpt.latest_checkpoint(run_dir) is not None:
        torn = ckpt.remove_torn(run_dir) if is_main_process else []
        for p in torn:
            print(f"isdaa: ignored an incomplete checkpoint {p} (a crash while writing it); removed")
        return ckpt.latest_checkpoint(run_dir)
    return None


def _clear_for_fresh_start(config: TrainConfig, run_dir: Path, is_main_process: bool) -> None:
    """A fresh start in a non-empty directory: refused without `overwrite`, else the outputs of the earlier
    run are removed (the reference cache is kept: it is keyed, stale entries are never hit)."""
    if not config.overwrite:
        why = (
            "holds checkpoints but resume is 'never'" if ckpt.latest_checkpoint(run_dir) is not None
            else "is not empty and holds no checkpoint to resume"
        )
        raise InputError(
            f"option output_dir: {run_dir} {why}; pass --overwrite to start over there, or choose another directory"
        )
    if is_main_process:
        for name in RUN_OUTPUTS:
            target = run_dir / name
            if name == "ref-cache":
                continue
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)


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


def prepare_output_dir(config: TrainConfig, inputs: RunInputs) -> DirectoryLock:
    """Lock the directory, decide fresh start vs resume, then create it. InputError if the directory is in the
    way or in use (then it is left as it was). Returns the lock: release it (`with`) when the run ends."""
    state = process_state()
    run_dir = inputs.run_dir
    _check_locations(config, inputs, state.num_processes)
    existed = run_dir.is_dir()
    lock = _lock(run_dir, state)
    try:
        inputs.resume_from = _resume_point(config, run_dir, state.is_main_process)
        if inputs.resume_from is None and _has_outputs(run_dir):
            _clear_for_fresh_start(config, run_dir, state.is_main_process)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=run_dir).close()
        except OSError as exc:
            raise InputError(f"option output_dir: cannot write in {run_dir} ({exc.strerror})") from None
    except BaseException:
        lock.release()
        if not existed and state.is_main_process:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # created for the lock only, so left as it was: absent
        raise
    if inputs.resume_from is not None and state.is_main_process:
        print(f"isdaa: resuming from {inputs.resume_from} (step {ckpt.read_state(inputs.resume_from).get('step')})")
    return lock
