"""Everything a training run checks before it writes a byte: config names, model source, tokenizer,
data (every row), and the output directory (resume / overwrite / writable).
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from isdaa.training import checkpoint as ckpt
from isdaa.config import TrainConfig
from isdaa.errors import InputError

RUN_OUTPUTS = ("checkpoints", "final", "metrics.jsonl", "config.yaml", "ref-cache")


@dataclass
class RunInputs:
    tokenizer: object
    train: list
    eval: list
    dropped: int
    run_dir: Path
    ref_cache_dir: Path
    model_id: str
    resume_from: Path | None = None


def _choice(option: str, value: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(f"option {option}: unknown value '{value}'{hint}; expected one of {', '.join(choices)}")


def _check_objective(config: TrainConfig) -> None:
    """Run the configured objective once on dummy log-probs: unknown or bad `objective.hparams` (and any
    other argument the objective refuses) fail here, before the output directory exists."""
    import torch

    from isdaa.objectives import daa_objective

    o = config.objective
    hparams = dict(o.hparams)
    if o.label_smoothing:
        hparams["label_smoothing"] = o.label_smoothing
    logps = torch.tensor([-4.0, -6.0])
    try:
        daa_objective(
            loss=o.loss, beta=o.beta, policy_chosen_logps=logps, policy_rejected_logps=logps - 1,
            ref_chosen_logps=logps, ref_rejected_logps=logps - 1, chosen_lengths=torch.tensor([2.0, 3.0]),
            rejected_lengths=torch.tensor([3.0, 2.0]), weighting=o.weighting, eps=o.is_eps, sft_eta=o.sft_eta,
            sft_token_mean=o.sft_token_mean, loss_hparams=hparams,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"option objective (loss '{o.loss}', objective.hparams {o.hparams}): {exc}") from None


def _examples(path, tokenizer, cfg: TrainConfig, what: str):
    from isdaa.data import load_rows, tokenize_rows

    rows = load_rows(path, extra_columns=tuple(cfg.data.extra_columns))
    examples, dropped = tokenize_rows(
        rows, tokenizer, max_length=cfg.data.max_length, max_prompt_length=cfg.data.max_prompt_length, source=str(path)
    )
    return examples, dropped


def prepare_inputs(config: TrainConfig) -> RunInputs:
    from isdaa.data import check_tokenizer
    from isdaa.modeling.loading import check_lora_targets, check_model_source, load_tokenizer, model_identity
    from isdaa.objectives import LOSS_KINDS, WEIGHTINGS

    o = config.objective
    _choice("objective.loss", o.loss, LOSS_KINDS)
    _choice("objective.weighting", o.weighting, WEIGHTINGS)
    if o.label_smoothing and o.loss != "sigmoid":
        raise InputError(f"option objective.label_smoothing: only the sigmoid (DPO) loss takes it, not '{o.loss}'")
    if config.data.train_file is None:
        raise InputError("option data.train_file: required (a .jsonl/.json/.parquet file or a datasets directory)")
    if config.data.max_prompt_length >= config.data.max_length:
        raise InputError(
            f"option data.max_prompt_length: must be < data.max_length ({config.data.max_prompt_length} >= {config.data.max_length})"
        )
    if config.model.name_or_path is None and config.model.init is None:
        raise InputError("option model.name_or_path: required (a local model directory or .gguf file), or set model.init")
    _check_objective(config)
    check_model_source(config.model)
    if config.lora.enabled:
        check_lora_targets(config.model, config.lora)
    tokenizer = load_tokenizer(config.model)
    check_tokenizer(tokenizer, config.model.tokenizer or config.model.name_or_path)
    train, dropped = _examples(config.data.train_file, tokenizer, config, "train")
    evals = _examples(config.data.eval_file, tokenizer, config, "eval")[0] if config.data.eval_file else []
    run_dir = Path(config.output_dir)
    return RunInputs(
        tokenizer=tokenizer, train=train, eval=evals, dropped=dropped, run_dir=run_dir,
        ref_cache_dir=Path(config.ref_cache_dir) if config.ref_cache_dir else run_dir / "ref-cache",
        model_id=model_identity(config.model, config.seed),
    )


def _check_writable(path: Path, option: str = "output_dir") -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"option {option}: {path} cannot be created ({probe} is a file, not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"option {option}: {path} is not writable (no write permission on {probe})")


def prepare_output_dir(config: TrainConfig, inputs: RunInputs) -> None:
    """Decide fresh start vs resume, then create the directory. InputError if the directory is in the way."""
    from isdaa.training.runtime import process_state

    state = process_state()
    run_dir = inputs.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"option output_dir: {run_dir} exists and is not a directory")
    _check_writable(run_dir)
    if inputs.ref_cache_dir.exists() and not inputs.ref_cache_dir.is_dir():
        raise InputError(f"option ref_cache_dir: {inputs.ref_cache_dir} exists and is not a directory")
    _check_writable(inputs.ref_cache_dir, "ref_cache_dir" if config.ref_cache_dir else "output_dir")
    world = config.batch_size * config.grad_accum * state.num_processes
    if len(inputs.train) < world:
        raise InputError(
            f"{config.data.train_file}: {len(inputs.train)} usable pairs, fewer than one global batch "
            f"(batch_size x grad_accum x processes = {world})"
        )
    if config.resume not in ("auto", "never"):
        path = Path(config.resume)
        if not ckpt.is_complete(path):
            raise InputError(
                f"option resume: {path} is not a complete checkpoint (expected a checkpoint directory with "
                f"{ckpt.STATE_FILE}, or resume: auto | never)"
            )
        inputs.resume_from = path
    elif config.resume == "auto" and ckpt.latest_checkpoint(run_dir) is not None:
        torn = ckpt.remove_torn(run_dir) if state.is_main_process else []
        for p in torn:
            print(f"isdaa: ignored an incomplete checkpoint {p} (a crash while writing it); removed")
        inputs.resume_from = ckpt.latest_checkpoint(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        if not config.overwrite:
            why = (
                "holds checkpoints but resume is 'never'" if ckpt.latest_checkpoint(run_dir) is not None
                else "is not empty and holds no checkpoint to resume"
            )
            raise InputError(
                f"option output_dir: {run_dir} {why}; pass --overwrite to start over there, or choose another directory"
            )
        if state.is_main_process:
            for name in RUN_OUTPUTS:
                target = run_dir / name
                if name == "ref-cache":
                    continue  # keep the cache: it is keyed, stale entries are never hit
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as exc:
        raise InputError(f"option output_dir: cannot write in {run_dir} ({exc.strerror})") from None
    if inputs.resume_from is not None and state.is_main_process:
        print(f"isdaa: resuming from {inputs.resume_from} (step {ckpt.read_state(inputs.resume_from).get('step')})")
