"""The training loop on Accelerate: forward, objective, step, log, checkpoint, resume.

No loss formula lives here: `isdaa.objectives.daa_objective` turns sequence log-probs into the loss,
weights and metrics. One optimizer step = `grad_accum` micro-batches of `batch_size` pairs on each
process; the data order of epoch e is a permutation seeded by (seed, e), so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from isdaa.training import checkpoint as ckpt
from isdaa.config import TrainConfig, save_config
from isdaa.data import SHARED_KEYS, collate, collate_shared
from isdaa.errors import InputError
from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
from isdaa.objectives import daa_objective, preference_metrics
from isdaa.training.reference_cache import attach_reference_logps, cached_reference_logps
from isdaa.training.setup import RunInputs, prepare_inputs, prepare_output_dir
from isdaa.training.runlog import MetricsLog, aggregate


class TrainingStopped(RuntimeError):
    """Raised after `max_bad_steps` consecutive non-finite steps (a checkpoint is saved first)."""


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    steps: int
    skipped_steps: int
    history: list[dict] = field(default_factory=list)


def _call(callbacks, name, *args):
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


# Prompt sharing pays for its second forward call (and second embedding backward) only with long prompts:
# on CPU it lost below ~64 prompt tokens per pair on a 4-layer model (docs/performance.md).
MIN_SHARED_PROMPT_TOKENS = 64


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


class _EpochOrder(torch.utils.data.Dataset):
    """The examples of one epoch, in the order of a permutation seeded by (seed, epoch)."""

    def __init__(self, examples, seed: int, epoch: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(examples), generator=g).tolist()
        self.examples = examples

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.examples[self.order[i]]


class Trainer:
    def __init__(self, config: TrainConfig, inputs: RunInputs, callbacks=()):
        from accelerate import Accelerator

        self.cfg = config
        self.inputs = inputs
        self.callbacks = list(callbacks)
        from accelerate.state import AcceleratorState

        from isdaa.training.runtime import use_cpu

        # a process may train several runs (the lab, notebooks): each gets its own precision settings;
        # the process group (PartialState) is kept
        AcceleratorState._reset_state()

        # our schedule counts optimizer steps (one per global batch): accelerate must not step it once per process
        self.acc = Accelerator(
            cpu=use_cpu(), step_scheduler_with_optimizer=False, mixed_precision=config.mixed_precision,
            log_with=config.trackers or None, project_dir=str(inputs.run_dir),
        )
        self.run_dir = inputs.run_dir
        self.tok = inputs.tokenizer
        self.pad = self.tok.pad_token_id

    # ---- set-up -------------------------------------------------------------------------------
    def _reference_logps(self, policy, reference):
        """Precompute (and cache) reference log-probs for train and eval examples when asked."""
        cfg = self.cfg
        for examples in (self.inputs.train, self.inputs.eval):
            if not examples or all(e.ref_chosen_logps is not None for e in examples):
                continue
            model = reference if reference is not None else policy
            ctx = policy.disable_adapter() if reference is None else contextlib.nullcontext()
            bar = tqdm(total=len(examples), desc="reference log-probs", disable=not self._bars(), leave=False)
            with self.acc.main_process_first(), ctx:
                chosen, rejected, _ = cached_reference_logps(
                    model.to(self.acc.device), examples, cache_dir=self.inputs.ref_cache_dir,
                    model_id=self.inputs.model_id, pad_token_id=self.pad, batch_size=cfg.eval_batch_size, progress=bar,
                    prompt_sharing=self._shared(),
                )
            bar.close()
            attach_reference_logps(examples, chosen, rejected)

    def _shared(self) -> bool:
        """Whether batches use the shared-prompt layout: `prompt_sharing`, no gradient checkpointing (the
        cache is dropped there), and prompts long enough to pay for the second forward call."""
        if not hasattr(self, "_shared_prompt"):
            train = self.inputs.train
            mean_prompt = sum(len(e.prompt_ids) for e in train) / max(len(train), 1)
            self._shared_prompt = bool(
                self.cfg.prompt_sharing and not self.cfg.model.gradient_checkpointing
                and mean_prompt >= MIN_SHARED_PROMPT_TOKENS
            )
        return self._shared_prompt

    def _collate(self, examples):
        return collate_shared(examples, self.pad) if self._shared() else collate(examples, self.pad)

    def _bars(self) -> bool:
        return self.cfg.progress and self.acc.is_local_main_process

    def _optimizer_and_schedule(self, policy, total_steps: int):
        from transformers import (
            get_constant_schedule_with_warmup,
            get_cosine_with_min_lr_schedule_with_warmup,
            get_linear_schedule_with_warmup,
        )

        o = self.cfg.optim
        params = [p for p in policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps, weight_decay=o.weight_decay)
        warmup = int(o.warmup_ratio * total_steps)
        if o.scheduler == "cosine":
            sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total_steps, min_lr_rate=o.min_lr_ratio)
        elif o.scheduler == "linear":
            sched = get_linear_schedule_with_warmup(opt, warmup, total_steps)
        else:
            sched = get_constant_schedule_with_warmup(opt, warmup)
        return opt, sched

    # ---- one step -----------------------------------------------------------------------------
    def _objective(self, policy, reference, batch):
        o = self.cfg.objective
        out = _pair_logps(policy, batch)
        if "ref_chosen_logps" in batch:
            ref_c, ref_r = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        else:
            with torch.no_grad():
                ctx = self.acc.unwrap_model(policy).disable_adapter() if reference is None else contextlib.nullcontext()
                with ctx:
                    ref = _pair_logps(reference if reference is not None else policy, batch)
            ref_c, ref_r = ref["chosen_logps"], ref["rejected_logps"]
        hparams = dict(o.hparams)
        if o.label_smoothing:
            hparams["label_smoothing"] = o.label_smoothing
        return daa_objective(
            loss=o.loss, beta=o.beta,
            policy_chosen_logps=out["chosen_logps"], policy_rejected_logps=out["rejected_logps"],
            ref_chosen_logps=ref_c, ref_rejected_logps=ref_r,
            behavior_chosen_logps=batch.get("behavior_chosen_logps"),
            behavior_rejected_logps=batch.get("behavior_rejected_logps"),
            chosen_lengths=out["chosen_lengths"], rejected_lengths=out["rejected_lengths"],
            weighting=o.weighting, eps=o.is_eps, user_weights=batch.get("weight"),
            sft_eta=o.sft_eta, sft_token_mean=o.sft_token_mean, loss_hparams=hparams,
        )

    def _loader(self, epoch: int, skip: int):
        dl = torch.utils.data.DataLoader(
            _EpochOrder(self.inputs.train, self.cfg.seed, epoch), batch_size=self.cfg.batch_size, shuffle=False,
            drop_last=True, collate_fn=self._collate,
        )
        dl = self.acc.prepare_data_loader(dl)
        return iter(self.acc.skip_first_batches(dl, skip) if skip else dl)

    @torch.no_grad()
    def _held_out(self, policy, reference) -> dict:
        """Preference accuracy and margins on the eval pairs (`eval/` metric keys)."""
        if not self.inputs.eval:
            return {}
        policy.eval()
        records = []
        for start in range(0, len(self.inputs.eval), self.cfg.eval_batch_size):
            batch = self._collate(self.inputs.eval[start : start + self.cfg.eval_batch_size])
            batch = {k: v.to(self.acc.device) for k, v in batch.items()}
            out = self._objective(policy, reference, batch)
            records.append(out.metrics)
        policy.train()
        return {f"eval/{k}": v for k, v in aggregate(records).items()}

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from isdaa.modeling.loading import apply_lora, frozen_copy, load_policy

        cfg, acc = self.cfg, self.acc
        policy = load_policy(cfg.model, seed=cfg.seed)
        if cfg.lora.enabled:
            policy = apply_lora(policy, cfg.lora, gradient_checkpointing=cfg.model.gradient_checkpointing, seed=cfg.seed)
            reference = None  # the adapter-disabled policy
        else:
            reference = frozen_copy(policy)
        if cfg.precompute_ref:
            self._reference_logps(policy, reference)
            if reference is not None:
                reference = None if self._all_have_ref() else reference
        if reference is not None:
            reference.to(acc.device)

        world = cfg.batch_size * acc.num_processes * cfg.grad_accum
        steps_per_epoch = len(self.inputs.train) // world
        total = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
        opt, sched = self._optimizer_and_schedule(policy, total)
        policy, opt, sched = acc.prepare(policy, opt, sched)
        policy.train()

        start, state = 0, {"skipped_steps": 0, "bad_streak": 0}
        if self.inputs.resume_from is not None:
            try:
                acc.load_state(str(self.inputs.resume_from))
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                raise InputError(
                    f"option resume: checkpoint {self.inputs.resume_from} cannot be loaded "
                    f"({str(exc).splitlines()[0][:200]}); resume from another one or start over with --resume never --overwrite"
                ) from None
            state.update(ckpt.read_state(self.inputs.resume_from))
            start = state["step"]
        log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=acc.is_main_process)
        log.truncate_after(start)
        if acc.is_main_process:
            save_config(cfg, self.run_dir / "config.yaml")
        if cfg.trackers:
            acc.init_trackers(self.run_dir.name, config={"seed": cfg.seed})
        unwrapped = acc.unwrap_model(policy)
        if acc.is_main_process:
            _call(self.callbacks, "on_train_begin", unwrapped, self.tok)
        if start == 0:
            self._evaluate(0, policy, reference, log)

        bar = tqdm(total=total, initial=start, desc="train", disable=not self._bars(), dynamic_ncols=True)
        history, it, it_epoch = [], None, None
        for step in range(start, total):
            epoch, pos = divmod(step, steps_per_epoch)
            if it_epoch != epoch:
                it, it_epoch = self._loader(epoch, skip=pos * cfg.grad_accum if step == start else 0), epoch
            t0 = time.perf_counter()
            records, tokens, finite = [], 0, True
            for micro in range(cfg.grad_accum):
                batch = next(it)
                sync = acc.no_sync(policy) if micro < cfg.grad_accum - 1 else contextlib.nullcontext()
                with sync:
                    out = self._objective(policy, reference, batch)
                    finite &= bool(torch.isfinite(out.loss))
                    acc.backward(out.loss / cfg.grad_accum)
                records.append(out.metrics)
                tokens += _batch_tokens(batch)
            norm = acc.clip_grad_norm_(policy.parameters(), cfg.optim.max_grad_norm or float("inf"))
            finite &= bool(torch.isfinite(torch.as_tensor(norm)))
            finite = bool(acc.reduce(torch.tensor(float(finite), device=acc.device), "min") > 0)
            if finite:
                opt.step()
                state["bad_streak"] = 0
            else:
                state["skipped_steps"] += 1
                state["bad_streak"] += 1
            with warnings.catch_warnings():  # a skipped first step makes torch warn about the call order
                warnings.simplefilter("ignore", UserWarning)
                sched.step()
            opt.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            done = step + 1

            if done % cfg.log_every == 0 or done == total or not finite:
                m = self._gather(aggregate(records))
                m.update({"step": done, "epoch": done / steps_per_epoch, "lr": sched.get_last_lr()[0],
                          "grad_norm": float(norm), "skipped_steps": state["skipped_steps"],
                          "throughput/pairs_per_s": world / elapsed,
                          "throughput/tokens_per_s": tokens * acc.num_processes / elapsed})
                log.write(m)
                history.append(m)
                acc.log(m, step=done)
                if acc.is_main_process:
                    _call(self.callbacks, "on_log", done, m)
                bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['rewards/accuracies']:.2f}",
                                w=f"{m['weights/mean']:.3g}", ess=f"{m['weights/ess']:.2f}", refresh=False)
            bar.update(1)
            if state["bad_streak"] >= cfg.max_bad_steps:
                path = ckpt.save_checkpoint(acc, self.run_dir, done, {**state, "epoch": epoch}, cfg.keep_last)
                bar.close()
                raise TrainingStopped(
                    f"stopped at step {done}: {state['bad_streak']} consecutive steps with a non-finite loss or "
                    f"gradient (checkpoint saved to {path}); lower the learning rate or check the data"
                )
            if cfg.save_every and done % cfg.save_every == 0 and done < total:
                ckpt.save_checkpoint(acc, self.run_dir, done, {**state, "epoch": epoch}, cfg.keep_last)
            if cfg.eval_every and done % cfg.eval_every == 0 and done < total:
                self._evaluate(done, policy, reference, log)
        bar.close()
        if start < total or start == 0:
            self._evaluate(total, policy, reference, log)
        final = self._save_final(policy)
        result = TrainResult(self.run_dir, final, total, state["skipped_steps"], history)
        if acc.is_main_process:
            _call(self.callbacks, "on_train_end", result)
        # the DDP wrapper must be gone before the process group is destroyed: a gloo group torn down
        # under a live Reducer hangs in its destructor at exit
        del policy, opt, sched, it
        acc.free_memory()
        acc.end_training()
        return result

    def _all_have_ref(self) -> bool:
        return all(e.ref_chosen_logps is not None for e in self.inputs.train + self.inputs.eval)

    def _gather(self, metrics: dict) -> dict:
        if self.acc.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = self.acc.gather(torch.tensor([metrics[k] for k in keys], device=self.acc.device).unsqueeze(0))
        return aggregate([dict(zip(keys, row.tolist())) for row in values])

    def _evaluate(self, step, policy, reference, log):
        m = self._held_out(policy, reference)
        if m:
            log.write({"step": step, **m})
            self.acc.log(m, step=step)
        if self.acc.is_main_process and any(hasattr(cb, "on_eval") for cb in self.callbacks):
            model = self.acc.unwrap_model(policy)
            model.eval()
            _call(self.callbacks, "on_eval", step, model, self.tok)
            model.train()
        self.acc.wait_for_everyone()

    def _save_final(self, policy) -> Path:
        """`final/`: a plain transformers model (LoRA merged; the adapter alone in `final/adapter`)."""
        import shutil

        acc = self.acc
        final, tmp = self.run_dir / "final", self.run_dir / "final.tmp"
        acc.wait_for_everyone()
        state_dict = acc.get_state_dict(policy)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            model = acc.unwrap_model(policy)
            if self.cfg.lora.enabled:
                model.save_pretrained(tmp / "adapter")
                model = model.merge_and_unload()
                state_dict = None
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            self.tok.save_pretrained(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        acc.wait_for_everyone()
        return final


def train(config: TrainConfig, *, callbacks=()) -> TrainResult:
    """Validate every input, then train. Raises `InputError` (nothing written) on bad input."""
    from isdaa.training.runtime import set_threads

    set_threads(config.num_threads)
    if not config.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    inputs = prepare_inputs(config)
    prepare_output_dir(config, inputs)
    return Trainer(config, inputs, callbacks).run()
