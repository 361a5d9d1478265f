"""The training loop on Accelerate: set-up, one optimizer step, logging, checkpoints, the end of a run.

No loss formula lives here: the run's `isdaa.objectives.Objective` (built by the set-up) turns sequence log-probs
into the loss, weights and metrics. One optimizer step = `grad_accum` micro-batches of `batch_size` pairs on
each process; the data order of epoch e is seeded by (seed, e) (`data_order.py`), so a resumed run sees
exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors import SafetensorError
from tqdm.auto import tqdm

from isdaa.config import TrainConfig
from isdaa.data import SHARED_KEYS, collate, collate_shared
from isdaa.errors import InputError
from isdaa.modeling.loading import third_party_progress_bars
from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
from isdaa.modeling.trunk import TrunkCache, decoder_layer_count
from isdaa.objectives import ObjectiveOutput, PairLogps
from isdaa.runtime import process_state, read_metrics, set_threads, use_cpu
from isdaa.training import checkpoint as ckpt
from isdaa.training.alarms import WeightAlarms, alarm_patience
from isdaa.training.cadence import Cadence
from isdaa.training.callbacks import RunHandle, call_hook, has_hook, requested_stop
from isdaa.training.data_order import epoch_batches
from isdaa.training.final_model import save_final
from isdaa.training.loop_state import LoopState
from isdaa.training.model_card import model_card, run_facts
from isdaa.training.optimizer import optimizer_and_schedule
from isdaa.training.parallel import make_plan
from isdaa.training.preflight import check_data
from isdaa.training.resume import RunShape, checkpoint_record, planned_steps, steps_per_epoch, write_settings
from isdaa.training.run_models import load_run_models
from isdaa.training.runlog import MetricsLog, aggregate, write_run_config
from isdaa.training.setup import RunInputs, prepare_inputs, prepare_output_dir
from isdaa.training.signals import StopSignals
from isdaa.training.stopping import StopRequest, bad_steps_stop, signal_stop

# Prompt sharing pays for its second forward call (and second embedding backward) only with long prompts; the
# threshold and its measurement: docs/performance.md.
MIN_SHARED_PROMPT_TOKENS = 64


@dataclass
class TrainResult:
    """What `fit` (and `isdaa.train`) returns: the run directory, `final/`, the step count, how many steps were
    skipped (non-finite), and the metrics logged by this process (`metrics.jsonl` holds those of earlier runs too)."""

    output_dir: Path
    final_dir: Path | None
    steps: int
    skipped_steps: int
    history: list[dict] = field(default_factory=list)
    stop_reason: str | None = None  # set when a callback ended the run early (`stop_requested`)
    already_finished: bool = False  # nothing was trained: the run in the directory was finished (`resume.py`)


@dataclass
class StepOutcome:
    """One optimizer step, as the log needs it."""

    records: list[dict]  # the metrics of each micro-batch (this process)
    tokens: int  # prompt+completion tokens of its batches (this process)
    grad_norm: torch.Tensor | float  # before clipping
    finite: bool  # False: the step was skipped on every process
    seconds: float


def _pair_logps(model, batch) -> dict:
    """`batch_logps` of either batch layout: `collate` (2B concatenated rows) or `collate_shared` (prompt once)."""
    if "prompt_ids" in batch:
        return batch_logps_shared_prompt(model, *(batch[k] for k in SHARED_KEYS))
    return batch_logps(model, batch)


def _batch_tokens(batch) -> int:
    """Tokens of the 2B prompt+completion sequences, whichever the layout (the same count for both)."""
    if "prompt_ids" in batch:
        return int(2 * batch["prompt_mask"].sum() + batch["chosen_mask"].sum() + batch["rejected_mask"].sum())
    return int(batch["attention_mask"].sum())


def _use_shared_prompt(config: TrainConfig, train_examples) -> bool:
    """`prompt_sharing` and prompts long enough to pay for the second forward call (with or without
    gradient checkpointing: isdaa's per-layer checkpointing keeps the KV cache); never with `lora.cache_trunk`
    (the cached trunk already runs each sequence once)."""
    if config.lora.cache_trunk:
        return False
    mean_prompt = sum(len(e.prompt_ids) for e in train_examples) / max(len(train_examples), 1)
    return bool(config.prompt_sharing and mean_prompt >= MIN_SHARED_PROMPT_TOKENS)


class Trainer:
    """One run on validated inputs: `run` = `setup`, then `optimizer_step` (+ `log_step`, `end_step`)
    up to the last step or a stop (`stop`), then `finish`. The loop's counters: `state` (`LoopState`).
    Callback hooks: `isdaa.training.callbacks.Callback`."""

    def __init__(self, config: TrainConfig, inputs: RunInputs, callbacks=()):
        self.cfg = config
        self.inputs = inputs
        self.callbacks = list(callbacks)
        self.run_dir = inputs.run_dir
        self.tok = inputs.tokenizer
        self.pad = self.tok.pad_token_id
        self.shared_prompt = _use_shared_prompt(config, inputs.train)
        self.history: list[dict] = []
        # a process may train several runs (the lab, notebooks): each gets its own precision settings;
        # the process group (PartialState) is kept
        AcceleratorState._reset_state()
        # our schedule counts optimizer steps (one per global batch): accelerate must not step it once per process
        # under distributed: fsdp2 bf16 is FSDP2's own mixed precision (sharding.py), not accelerate's autocast
        self.acc = Accelerator(
            cpu=use_cpu(), step_scheduler_with_optimizer=False, log_with=config.trackers or None,
            mixed_precision="no" if config.distributed == "fsdp2" else config.mixed_precision,
            project_dir=str(inputs.run_dir),
        )
        self.plan = make_plan(self.acc, config)  # DDP / Accelerate's plugins, or isdaa's FSDP2 (parallel.py)
        self.global_batch = config.batch_size * self.acc.num_processes * config.grad_accum
        self.signals = StopSignals()
        self.log_cadence = Cadence(config.log_every, at_last=True)
        self.checkpoint_cadence, self.eval_cadence = Cadence(config.save_every), Cadence(config.eval_every)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Set up, then train and finish, SIGTERM / SIGUSR1 / Ctrl-C deferred to the end of a step (`signals.py`);
        transformers' own bars ("Loading weights", ...) only where the run shows its bars."""
        with third_party_progress_bars(self._bars()):
            self.setup()
            with self.signals:
                return self._train_and_finish()

    def _train_and_finish(self) -> TrainResult:
        """Train from the first step not done yet up to the last or a stop, and finish."""
        state, last = self.state, self.total_steps
        bar = tqdm(total=last, initial=state.step, desc="train", disable=not self._bars(), dynamic_ncols=True)
        try:
            with third_party_progress_bars(False):  # a mid-run save's "Writing model shards" would cut the bar
                while state.step < last and self.stop_reason is None:
                    self._enter_epoch()
                    outcome = self.optimizer_step()
                    if self.log_cadence.due(state.step, last=last) or not outcome.finite:
                        self.log_step(state.step, outcome, bar)
                    bar.update(1)
                    self.end_step(state.step)
        finally:
            bar.close()
        return self.finish()

    def optimizer_step(self) -> StepOutcome:
        """`grad_accum` micro-batches forward and backward (gradients synchronised on the last one), clip,
        then the optimizer step, skipped on every process when any of them saw a non-finite loss or gradient."""
        cfg, acc = self.cfg, self.acc
        started = time.perf_counter()
        records, tokens, finite = [], 0, True
        for micro in range(cfg.grad_accum):
            batch = next(self.batches)
            last = micro == cfg.grad_accum - 1
            with self.plan.no_sync(self.policy, last):
                out = self.pair_objective(batch)
                finite &= bool(torch.isfinite(out.loss))
                acc.backward(out.loss / self.plan.loss_divisor(cfg.grad_accum))
            records.append(out.metrics)
            tokens += _batch_tokens(batch)
        norm = self.plan.clip_grad_norm(self.policy, cfg.optim.max_grad_norm or float("inf"))
        finite &= bool(torch.isfinite(torch.as_tensor(norm)))
        # finite on every process (accelerate's reduce sums: a sum of "not finite" flags of 0)
        finite = bool(acc.reduce(torch.tensor(float(not finite), device=acc.device), "sum") == 0)
        if finite:
            self.optimizer.step()
        self.state.advance(finite)
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the call order
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(records, tokens, norm, finite, time.perf_counter() - started)

    def pair_objective(self, batch) -> ObjectiveOutput:
        """The objective of one batch: the policy's log-probs (with gradient) against the reference's
        (precomputed into the batch, or a no-grad forward)."""
        if self.trunk is not None:
            with self.acc.autocast():  # the cache calls the decoder directly, past the prepared model's autocast
                policy = self.trunk.batch_logps(self.policy, batch)
        else:
            policy = _pair_logps(self.policy, batch)
        ref_chosen, ref_rejected = self._reference_of(batch)
        return self.inputs.objective(
            PairLogps(policy["chosen_logps"], policy["rejected_logps"], policy["chosen_lengths"],
                      policy["rejected_lengths"]),
            PairLogps(ref_chosen, ref_rejected), PairLogps.from_columns(batch, "behavior"),
            user_weights=batch.get("weight"), gather=self.acc.gather if self.acc.num_processes > 1 else None,
        )

    def _reference_of(self, batch):
        """(chosen, rejected) reference log-probs of `batch`; without a reference model (LoRA) the policy
        with its adapter disabled is the reference."""
        if "ref_chosen_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        with torch.no_grad():
            if self.reference is None:
                model, adapter_off = self.policy, self.acc.unwrap_model(self.policy).disable_adapter()
            else:
                model, adapter_off = self.reference, contextlib.nullcontext()
            with adapter_off:
                ref = _pair_logps(model, batch)
        return ref["chosen_logps"], ref["rejected_logps"]

    def _enter_epoch(self) -> None:
        """The epoch of the next step in `state`; at its first step (or the step a run resumes at, its batches
        already done skipped) a fresh iterator over its batches."""
        epoch, position = self.state.position(self.steps_per_epoch)
        if epoch != self.batches_epoch:
            self.batches = epoch_batches(
                self.acc, self.inputs.train, seed=self.cfg.seed, epoch=epoch, batch_size=self.cfg.batch_size,
                collate_fn=self._collate, skip=position * self.cfg.grad_accum,
                group=self.global_batch if self.cfg.data.group_by_length else 0, shared_prompt=self.shared_prompt,
            )
            self.batches_epoch = epoch
        self.state.epoch = epoch

    # ---- logging, checkpoints, evaluation -----------------------------------------------------
    def log_step(self, step: int, outcome: StepOutcome, bar) -> None:
        """Write the metrics of step `step` (averaged over micro-batches and processes) to `metrics.jsonl`,
        the trackers, the history and the `on_log` hook."""
        acc = self.acc
        metrics = self._gather(aggregate(outcome.records))
        metrics.update({
            "step": step, "epoch": step / self.steps_per_epoch, "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(outcome.grad_norm), "skipped_steps": self.state.skipped_steps,
            "throughput/pairs_per_s": self.global_batch / outcome.seconds,
            "throughput/tokens_per_s": outcome.tokens * acc.num_processes / outcome.seconds,
        })
        self.log.write(metrics)
        self.history.append(metrics)
        acc.log(metrics, step=step)
        if acc.is_main_process:
            call_hook(self.callbacks, "on_log", step, metrics)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['rewards/accuracies']:.2f}",
                        w=f"{metrics['weights/mean']:.3g}", ess=f"{metrics['weights/ess']:.2f}", refresh=False)
        self._warn_about_weights(step, metrics)

    def _warn_about_weights(self, step: int, metrics: dict) -> None:
        """A weighting that underflows or saturates (`alarms.py`): its one warning in `metrics.jsonl` and on stderr."""
        for key, message in self.alarms.observe(step, metrics):
            self.log.write({"step": step, key: message})
            if self.acc.is_main_process:
                tqdm.write(f"isdaa: warning: {message}", file=sys.stderr)

    def end_step(self, step: int) -> None:
        """After optimizer step `step`: a stop for too many non-finite steps in a row or a stop signal; else
        the checkpoint and evaluation when due (the last step's are left to `finish`), the `on_step_end` hook
        and a stop if a callback asked for one."""
        stop = bad_steps_stop(self.state, self.cfg.max_bad_steps) or signal_stop(
            self.signals, self.acc, step, self.total_steps)
        if stop is None:
            if self.checkpoint_cadence.due(step, last=self.total_steps):
                self.save_checkpoint()
            if self.eval_cadence.due(step, last=self.total_steps):
                self.evaluate(step)
            stop = self._callback_stop(step)
        if stop is not None:
            self.stop(step, stop)

    def _callback_stop(self, step: int) -> StopRequest | None:
        """The `on_step_end` hook on every process, then the stop a callback asked for on any process."""
        if not has_hook(self.callbacks, "on_step_end"):
            return None
        self.handle.model.eval()
        call_hook(self.callbacks, "on_step_end", step, self.handle)
        self.handle.model.train()
        reason = requested_stop(self.callbacks)
        wanted = self.acc.reduce(torch.tensor(float(reason is not None), device=self.acc.device), "max") > 0
        return StopRequest(reason or "a callback on another process asked to stop") if wanted else None

    def stop(self, step: int, request: StopRequest) -> None:
        """The one way a run stops early: a checkpoint of `step` (unless the checkpoint cadence just wrote it, or
        the run finishes at its last step anyway), then the request's error; or a callback's reason in
        `metrics.jsonl` and `TrainResult.stop_reason`, and the loop ends (`finish` evaluates and writes `final/`)."""
        finishes, last = request.error is None, self.total_steps
        path = ckpt.checkpoint_dir(self.run_dir) / f"step-{step}"
        if not (finishes and (step >= last or self.checkpoint_cadence.due(step, last=last))):
            path = self.save_checkpoint()
        if not finishes:
            raise request.error(path)
        self.stop_reason, self.last_step = request.reason, step
        if step < last:
            self.stop_reason += f"; checkpoint {path}"
        self.log.write({"step": step, "stop_reason": self.stop_reason})

    def save_checkpoint(self) -> Path:
        """`checkpoints/step-N/` of the current step: accelerate's state plus the loop's (`LoopState`, atomic), the
        config and what else a resume checks (`resume.py`)."""
        return ckpt.save_checkpoint(self.acc, self.run_dir, self.state.step,
                                    {**self.state.to_checkpoint(), **checkpoint_record(self.shape)},
                                    self.cfg.keep_last, self._write_state)

    def _write_state(self, directory: Path) -> None:
        self.plan.write_checkpoint(directory, self.policy, self.optimizer, self.scheduler)
        if self.acc.is_main_process:
            write_settings(directory, self.cfg)

    def log_extra(self, step: int, metrics: dict) -> None:
        """A callback's record of step `step` (e.g. `monitor/...`) to `metrics.jsonl` and the trackers."""
        self.log.write({"step": step, **metrics})
        self.acc.log(metrics, step=step)

    def save_model(self, name: str) -> Path:
        """The policy as `<run_dir>/<name>/`, written like `final/` (collective)."""
        return save_final(self.acc, self.policy, self.tok, self.run_dir, lora=self.cfg.lora.enabled, name=name,
                          gather_model=self.plan.gather_model)

    def evaluate(self, step: int) -> None:
        """Held-out preference metrics (`eval/` keys, logged) and the `on_eval` hook, then a barrier."""
        self.evaluated_step = step
        metrics = self._held_out()
        if metrics:
            self.log.write({"step": step, **metrics})
            self.acc.log(metrics, step=step)
        if self.acc.is_main_process and has_hook(self.callbacks, "on_eval"):
            model = self.acc.unwrap_model(self.policy)
            model.eval()
            call_hook(self.callbacks, "on_eval", step, model, self.tok)
            model.train()
        self.acc.wait_for_everyone()

    @torch.no_grad()
    def _held_out(self) -> dict:
        """Preference accuracy and margins on the eval pairs (`eval/` metric keys)."""
        if not self.inputs.eval:
            return {}
        self.policy.eval()
        records = []
        size = self.cfg.eval_batch_size
        for start in range(0, len(self.inputs.eval), size):
            batch = self._collate(self.inputs.eval[start : start + size])
            batch = {k: v.to(self.acc.device) for k, v in batch.items()}
            records.append(self.pair_objective(batch).metrics)
        self.policy.train()
        return {f"eval/{k}": v for k, v in aggregate(records).items()}

    def _gather(self, metrics: dict) -> dict:
        """`metrics` averaged over processes (min / max for `*/min` / `*/max`)."""
        if self.acc.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = self.acc.gather(torch.tensor([metrics[k] for k in keys], device=self.acc.device).unsqueeze(0))
        return aggregate([dict(zip(keys, row.tolist())) for row in values])

    # ---- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        """Models, reference log-probs, optimizer and schedule, resume state, run log and config, the
        `on_train_begin` hook, and the step-0 evaluation of a fresh run."""
        cfg, acc = self.cfg, self.acc
        self.policy, self.reference, self.inputs = load_run_models(cfg, self.inputs, acc,
                                                                   shared_prompt=self.shared_prompt,
                                                                   progress=self._bars())
        self.trunk = self._trunk_cache()
        self.shape = RunShape(len(self.inputs.train), acc.num_processes, self.inputs.data_sha256)
        self.steps_per_epoch = steps_per_epoch(cfg, self.shape.train_pairs, self.shape.processes)
        self.total_steps = planned_steps(cfg, self.shape.train_pairs, self.shape.processes)
        self.policy, self.reference, self.optimizer, self.scheduler = self.plan.prepare(
            self.policy, self.reference, lambda model: optimizer_and_schedule(model, cfg.optim, self.total_steps))
        self.policy.train()
        self.state = self._resume()
        self.start_step = self.state.step
        self.batches, self.batches_epoch = None, None
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=acc.is_main_process)
        self.log.truncate_after(self.state.step)
        self.alarms = WeightAlarms(cfg.objective, alarm_patience(self.total_steps, cfg.log_every))
        if self.start_step > 0:
            self.alarms.replay(read_metrics(self.log.path))
        if acc.is_main_process:
            write_run_config(cfg, self.run_dir)
        if cfg.trackers:
            acc.init_trackers(self.run_dir.name, config={"seed": cfg.seed})
        if acc.is_main_process:
            call_hook(self.callbacks, "on_train_begin", acc.unwrap_model(self.policy), self.tok)
        self.stop_reason, self.last_step, self.evaluated_step = None, self.total_steps, None
        self.handle = RunHandle(acc.unwrap_model(self.policy), self.tok, acc, self.run_dir, self.total_steps,
                                cfg.lora.enabled, self.log_extra, self.save_model)
        if self.start_step == 0:
            self.evaluate(0)
            stop = self._callback_stop(0)
            if stop is not None:
                self.stop(0, stop)

    def _trunk_cache(self) -> TrunkCache | None:
        """The frozen trunk's cache of `lora.cache_trunk` (one process only), else None."""
        if not self.cfg.lora.cache_trunk:
            return None
        if self.acc.num_processes > 1:
            raise InputError("option lora.cache_trunk: one process only (the cache is not sharded)")
        return TrunkCache(decoder_layer_count(self.policy) - self.cfg.lora.layers)

    def _resume(self) -> LoopState:
        """A fresh loop state, or the one of the checkpoint to resume from, loaded with its model, optimizer,
        schedule and RNG."""
        path = self.inputs.resume_from
        if path is None:
            return LoopState()
        try:
            self.plan.read_checkpoint(path, self.policy, self.optimizer, self.scheduler)
        except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as exc:  # SafetensorError: torn weights
            raise InputError(
                f"option resume: checkpoint {path} cannot be loaded ({str(exc).splitlines()[0][:200]}); "
                "resume from another one or start over with --overwrite"
            ) from None
        return LoopState.from_checkpoint(ckpt.read_state(path))

    # ---- the end ------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """The last evaluation, `final/`, the `on_train_end` hook; then Accelerate's resources are freed."""
        acc, last = self.acc, self.last_step
        if (self.start_step < self.total_steps or self.start_step == 0) and self.evaluated_step != last:
            self.evaluate(last)
        card = model_card(self.cfg, run_facts(
            self.cfg, self.run_dir, steps=last, skipped_steps=self.state.skipped_steps,
            rows_used=len(self.inputs.train), rows_dropped=self.inputs.dropped)) if acc.is_main_process else None
        state = {"step": last, "total_steps": self.total_steps, "skipped_steps": self.state.skipped_steps,
                 "stop_reason": self.stop_reason}
        final = save_final(acc, self.policy, self.tok, self.run_dir, lora=self.cfg.lora.enabled, card=card,
                           state=state, gather_model=self.plan.gather_model)
        result = TrainResult(self.run_dir, final, last, self.state.skipped_steps, self.history,
                             self.stop_reason)
        if acc.is_main_process:
            if self.stop_reason is not None:
                print(f"isdaa: stopped at step {last} of {self.total_steps}: {self.stop_reason}; final model in {final}")
            call_hook(self.callbacks, "on_train_end", result)
        # the DDP wrapper must be gone before the process group is destroyed: a gloo group torn down
        # under a live Reducer hangs in its destructor at exit
        self.policy = self.reference = self.optimizer = self.scheduler = self.batches = None
        acc.free_memory()
        acc.end_training()
        self.plan.close()
        return result

    # ---- small helpers ------------------------------------------------------------------------
    def _collate(self, examples):
        return collate_shared(examples, self.pad) if self.shared_prompt else collate(examples, self.pad)

    def _bars(self) -> bool:
        return self.cfg.progress and self.acc.is_local_main_process


def fit(config: TrainConfig, *, callbacks=()) -> TrainResult:
    """The bare loop (no monitor, no plots: `isdaa.training.run.train` adds them): validate every input, then
    train; `callbacks` implement hooks of `isdaa.training.callbacks.Callback`. A finished run in `output_dir` (its
    `final/` at this length) is left as it is: nothing trained or written, `TrainResult.already_finished`.
    Raises `InputError` (nothing written) on bad input or a resume that would mix two runs, `TrainingStopped` after too many non-finite steps,
    `WriteFailed` when a checkpoint or `final/` cannot be written, `RunInterrupted` after a stop signal."""
    set_threads(config.num_threads)
    with third_party_progress_bars(config.progress):
        inputs = prepare_inputs(config)
        data = check_data(config, inputs)  # refuses data the tokenizer cannot read; nothing written yet
        with prepare_output_dir(config, inputs):  # the output directory's lock, held to the end of the run
            if inputs.finished is not None:
                return _finished_result(inputs)
            if process_state().is_main_process:
                data.show()  # the data report, before step 1
            return Trainer(config, inputs, callbacks).run()


def _finished_result(inputs: RunInputs) -> TrainResult:
    """The result of a run that was already finished: its `final/` and step, nothing trained."""
    done = inputs.finished
    return TrainResult(inputs.run_dir, inputs.run_dir / "final", done["step"], done.get("skipped_steps", 0),
                       stop_reason=done.get("stop_reason"), already_finished=True)
