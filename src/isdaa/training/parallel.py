"""How a run spreads the policy over processes: a plan the trainer asks at each point where that matters.

- `AcceleratePlan` (`distributed: accelerate`, the default): whatever Accelerate was launched with — one
  process, DDP (`torchrun`), or its FSDP / DeepSpeed plugin (`accelerate launch --config_file ...`).
  Under DeepSpeed isdaa fills the batch sizes, accumulation and clipping of the DeepSpeed config from its own
  options (`deepspeed_settings`), and the engine, not the trainer, divides the loss by the accumulation steps
  and takes the optimizer step (inside `accelerator.backward`, at the accumulation boundary).
- `ShardedPlan` (`distributed: fsdp2`): isdaa's own FSDP2 (`sharding.py`), the same code on CPU (gloo) and GPU
  (NCCL); checkpoints with `torch.distributed.checkpoint`, `final/` from the gathered full state dict (under LoRA
  loaded into a whole copy of the policy on the main process, which PEFT merges).

Each plan answers the same questions: `prepare` (wrap the models, build the optimizer and schedule), `no_sync`
(a micro-batch that only accumulates), `loss_divisor`, `clip_grad_norm`, `write_checkpoint` /
`read_checkpoint` (a checkpoint's contents), `gather_model` (what `final/` is written from, collective) and `close`.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.distributed as dist
from accelerate.utils import DistributedType

from isdaa.config import TrainConfig
from isdaa.errors import InputError
from isdaa.modeling.loading import apply_lora, load_policy
from isdaa.training import sharding


def deepspeed_settings(config: TrainConfig, num_processes: int) -> dict[str, tuple[str, object]]:
    """The DeepSpeed config values that follow from isdaa's options: {DeepSpeed key: (isdaa option, value)}."""
    return {
        "train_micro_batch_size_per_gpu": ("batch_size", config.batch_size),
        "gradient_accumulation_steps": ("grad_accum", config.grad_accum),
        "train_batch_size": ("batch_size x grad_accum x processes",
                             config.batch_size * config.grad_accum * num_processes),
        "gradient_clipping": ("optim.max_grad_norm", config.optim.max_grad_norm),
    }


def fill_deepspeed_config(ds_config: dict, config: TrainConfig, num_processes: int) -> dict:
    """Set each of `deepspeed_settings` in `ds_config` (Accelerate's `deepspeed_plugin.deepspeed_config`) where it
    is missing or "auto"; an explicit value that disagrees is an InputError naming both. Returns `ds_config`."""
    for key, (option, value) in deepspeed_settings(config, num_processes).items():
        given = ds_config.get(key, "auto")
        if given == "auto":
            ds_config[key] = value
        elif float(given) != float(value):
            raise InputError(
                f"option {option}: the DeepSpeed config sets {key} = {given}, isdaa's options give "
                f"{value}; set it to \"auto\" in the DeepSpeed config (isdaa fills it) or change the option"
            )
    return ds_config


class AcceleratePlan:
    """`distributed: accelerate`: the models, optimizer and schedule go through `accelerator.prepare`."""

    def __init__(self, accelerator, config: TrainConfig):
        self.acc = accelerator
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        if self.deepspeed:
            fill_deepspeed_config(accelerator.state.deepspeed_plugin.deepspeed_config, config,
                                  accelerator.num_processes)
            accelerator.gradient_accumulation_steps = config.grad_accum  # agrees with the engine's: no warning

    def prepare(self, policy, reference, build_optimizer):
        optimizer, scheduler = build_optimizer(policy)
        policy, optimizer, scheduler = self.acc.prepare(policy, optimizer, scheduler)
        return policy, reference, optimizer, scheduler

    def no_sync(self, model, last: bool):
        # DeepSpeed accumulates itself (ZeRO-2/3 refuse no_sync)
        return contextlib.nullcontext() if last or self.deepspeed else self.acc.no_sync(model)

    def loss_divisor(self, grad_accum: int) -> int:
        """What the trainer divides each micro-batch's loss by: the DeepSpeed engine does it itself."""
        return 1 if self.deepspeed else grad_accum

    def clip_grad_norm(self, model, max_norm: float) -> torch.Tensor:
        norm = self.acc.clip_grad_norm_(model.parameters(), max_norm)
        # DeepSpeed clips inside its step (gradient_clipping) and reports its norm, none before its first step
        return torch.as_tensor(0.0 if norm is None else norm)

    def write_checkpoint(self, directory, model, optimizer, scheduler) -> None:
        self.acc.save_state(str(directory), safe_serialization=True)

    def read_checkpoint(self, directory, model, optimizer, scheduler) -> None:
        self.acc.load_state(str(directory))

    def gather_model(self, model):
        return self.acc.unwrap_model(model), self.acc.get_state_dict(model)

    def close(self) -> None:
        """Nothing of its own to release (Accelerate ends its process group)."""


class ShardedPlan:
    """`distributed: fsdp2`: isdaa shards the policy (and a reference model kept for training) per decoder
    layer; the optimizer is built on the shards. One process without a process group gets a group of one
    (gloo on CPU, NCCL on a GPU), so the same code runs there too."""

    def __init__(self, accelerator, config: TrainConfig, rebuild=None):
        self.acc, self.mixed_precision, self.rebuild = accelerator, config.mixed_precision, rebuild
        # FSDP2 warns at each forward that the model's output holds a view (the hidden states): an in-place op
        # on it would skip the pre-backward all-gather; isdaa's log-probs only index and copy it
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        self.own_group = not dist.is_initialized()
        if self.own_group:
            backend = "nccl" if accelerator.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        self.mesh = sharding.device_mesh(accelerator.device, dist.get_world_size())

    def prepare(self, policy, reference, build_optimizer):
        policy = sharding.shard_model(policy.to(self.acc.device), self.mesh, self.mixed_precision)
        if reference is not None:
            reference = sharding.shard_model(reference, self.mesh, self.mixed_precision)
        optimizer, scheduler = build_optimizer(policy)
        return policy, reference, optimizer, scheduler

    def no_sync(self, model, last: bool):
        return contextlib.nullcontext() if last else sharding.gradients_unsynced(model)

    def loss_divisor(self, grad_accum: int) -> int:
        return grad_accum

    def clip_grad_norm(self, model, max_norm: float) -> torch.Tensor:
        return sharding.clip_grad_norm(model, max_norm)

    def write_checkpoint(self, directory, model, optimizer, scheduler) -> None:
        sharding.save_sharded_state(directory, model, optimizer, scheduler, rank=dist.get_rank())

    def read_checkpoint(self, directory, model, optimizer, scheduler) -> None:
        sharding.load_sharded_state(directory, model, optimizer, scheduler, rank=dist.get_rank())

    def gather_model(self, model):
        """The model `final/` is written from and its full state dict, on the main process (collective). Under LoRA
        a whole copy is rebuilt there (the base as loaded, the gathered adapter) for PEFT to merge."""
        state = sharding.full_state_dict(model)
        if self.rebuild is None or not self.acc.is_main_process:
            return model, state
        whole = self.rebuild()
        whole.load_state_dict(state)
        return whole, None

    def close(self) -> None:
        """End the process group of one that this plan formed."""
        if self.own_group and dist.is_initialized():
            dist.destroy_process_group()


def check_distributed(config: TrainConfig) -> None:
    """`distributed: fsdp2` with what it cannot serve is an InputError, before anything is written."""
    if config.distributed != "fsdp2":
        return
    refused = [
        (config.mixed_precision == "fp16", "mixed_precision", "fp16 needs a sharded gradient scaler; use bf16 or no"),
        (config.monitor.every > 0, "monitor.every",
         "each process samples its own prompts, out of step with the others' all-gathers; set 0"),
    ]
    for bad, option, why in refused:
        if bad:
            raise InputError(f"option {option}: not supported with distributed: fsdp2 ({why})")
    plugins = [name for name in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{name}", "").lower() == "true"]
    if plugins:  # set by `accelerate launch` in its workers; make_plan checks the same on the Accelerator
        raise InputError(_launched_with(plugins[0].lower()))


def _launched_with(kind: str) -> str:
    return (f"option distributed: fsdp2 shards the model itself, but Accelerate was launched with {kind}; launch "
            "with torchrun (or an accelerate config without FSDP / DeepSpeed), or set distributed: accelerate")


def make_plan(accelerator, config: TrainConfig):
    """The plan of `config.distributed`; fsdp2 under an Accelerate FSDP / DeepSpeed launch is refused."""
    if config.distributed != "fsdp2":
        return AcceleratePlan(accelerator, config)
    if accelerator.distributed_type not in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        raise InputError(_launched_with(accelerator.distributed_type.value.lower()))
    return ShardedPlan(accelerator, config, rebuild=_lora_policy(config) if config.lora.enabled else None)


def _lora_policy(config: TrainConfig):
    """A builder of the unsharded LoRA policy as the run starts it (the base weights stay frozen)."""
    return lambda: apply_lora(load_policy(config.model, seed=config.seed), config.lora, seed=config.seed)
