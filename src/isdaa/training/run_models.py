"""The models of a run: the policy (with its LoRA adapter) and the frozen reference, and the reference
log-probs computed once before the first step (`precompute_ref`) on copies of the run's examples."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from tqdm.auto import tqdm

from isdaa.config import TrainConfig
from isdaa.modeling.loading import apply_lora, frozen_copy, load_policy
from isdaa.training.reference_cache import attach_reference_logps, cached_reference_logps
from isdaa.training.setup import RunInputs


def load_run_models(config: TrainConfig, inputs: RunInputs, accelerator, *, shared_prompt: bool,
                    progress: bool) -> tuple[object, object | None, RunInputs]:
    """(policy, reference, inputs): no reference under LoRA (the policy with its adapter disabled), none once
    every example carries precomputed reference log-probs; `inputs` with those log-probs."""
    policy = load_policy(config.model, seed=config.seed)
    if config.lora.enabled:
        policy = apply_lora(policy, config.lora, gradient_checkpointing=config.model.gradient_checkpointing,
                            seed=config.seed)
        reference = None
    else:
        reference = frozen_copy(policy)
    if config.precompute_ref:
        inputs = with_reference_logps(config, inputs, policy, reference, accelerator, shared_prompt=shared_prompt,
                                      progress=progress)
        if reference is not None and all(e.ref_chosen_logps is not None for e in inputs.train + inputs.eval):
            reference = None
    if reference is not None:
        reference.to(accelerator.device)
    return policy, reference, inputs


def with_reference_logps(config: TrainConfig, inputs: RunInputs, policy, reference, accelerator, *,
                         shared_prompt: bool, progress: bool) -> RunInputs:
    """`inputs` whose train and eval examples carry their reference log-probs, computed once (or read from the
    cache); the examples given are left as they are."""
    for part in ("train", "eval"):
        examples = getattr(inputs, part)
        if not examples or all(e.ref_chosen_logps is not None for e in examples):
            continue
        model = reference if reference is not None else policy
        adapter_off = policy.disable_adapter() if reference is None else contextlib.nullcontext()
        bar = tqdm(total=len(examples), desc="reference log-probs", disable=not progress, leave=False)
        with accelerator.main_process_first(), adapter_off:
            chosen, rejected, _ = cached_reference_logps(
                model.to(accelerator.device), examples, cache_dir=inputs.ref_cache_dir, model_id=inputs.model_id,
                pad_token_id=inputs.tokenizer.pad_token_id, batch_size=config.eval_batch_size, progress=bar,
                prompt_sharing=shared_prompt,
            )
        bar.close()
        inputs = replace(inputs, **{part: attach_reference_logps(examples, chosen, rejected)})
    return inputs
