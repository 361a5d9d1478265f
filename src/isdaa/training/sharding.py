"""isdaa's own sharded data parallelism (`distributed: fsdp2`): torch's FSDP2 `fully_shard`, applied per layer.

Why isdaa shards the model itself rather than through Accelerate's FSDP plugin: Accelerate enables that plugin on
GPUs only (with `cpu=True` it falls back to DDP; without it no CPU process group forms), so its sharded path could
never run, let alone be tested, on a CPU machine. `fully_shard` is the same code on gloo (CPU) and NCCL (GPU): what
the tests run on 2 CPU processes is what runs on GPUs. Accelerate keeps what it does well — the process group,
`gather` / `reduce`, main-process helpers, trackers — and its own DDP / FSDP / DeepSpeed stays the default path
(`distributed: accelerate`, see `parallel.py`).

The layout (as torchtitan does it): one FSDP unit per decoder layer (all-gathered just before its forward and
backward, freed after), then the root, which holds the embedding, the final norm and the LM head (so tied
embeddings stay one parameter; FSDP2 does not reshard the root after its forward, so `isdaa.modeling.logprobs`
calling the LM head outside the model's forward sees whole weights). The prompt-shared forward calls the model
twice (the prompt, then both completions on its KV cache): FSDP2 gathers each layer once per call, and the
gradients of both uses reach the same shard (equal to one unsharded process: `tests/training/test_fsdp.py`).
The reference log-probs are precomputed before sharding (whole models; the main process first, the others read
its cache); a reference model still needed for training is sharded like the policy. Weight statistics and
ESS-based weightings see the global batch through `Accelerator.gather`, as under DDP.

Mixed precision: `bf16` is FSDP2's own `MixedPrecisionPolicy` (bf16 compute and all-gathers, fp32 master weights
and gradient reduction); `fp16` (which would need a sharded gradient scaler) is refused at set-up.
Checkpoints: `torch.distributed.checkpoint` — each process writes its own shards of the weights and AdamW state
(`dcp/`), plus the schedule (JSON) and each process's RNG state (safetensors). DCP's own `dcp/.metadata` is a
pickle that torch reads with `pickle.load`: resume only from checkpoints you trust (README, Security). `final/`: the full state dict gathered to the main
process (in CPU memory) and written with `save_pretrained`, a plain model that loads in one process.

Limits: the model is loaded whole on each process before it is sharded (no meta-device initialisation): once
sharded, each process keeps 1/N of the weights, gradients and AdamW state (plus the layer being gathered), but the
peak while loading is not lowered. A resume needs the same number of processes as the run that wrote the
checkpoint.

LoRA: the PEFT model is sharded the same way (frozen base weights and adapters together, per layer; the optimizer
holds the adapters' shards); the reference is the same sharded model with its adapter disabled. For `final/`, the
gathered state dict is loaded into a whole copy rebuilt on the main process (the base as loaded, since it stays
frozen), which PEFT merges as in one process (`parallel.ShardedPlan.gather_model`).
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from isdaa.errors import InputError

SHARDED_DIR = "dcp"  # inside a checkpoint: the torch.distributed.checkpoint files (one shard file per process)
SCHEDULE_FILE = "scheduler.json"


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (`model.model.layers` for Llama-like models; under PEFT,
    those of its base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise InputError(
            f"option distributed: fsdp2 shards each decoder layer, but {type(model).__name__} has no "
            "model.layers list; use distributed: accelerate"
        )
    return layers


def precision_policy(mixed_precision: str) -> MixedPrecisionPolicy:
    """FSDP2's mixed precision for the run's `mixed_precision` ("no" or "bf16")."""
    if mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: nn.Module, mesh, mixed_precision: str = "no") -> nn.Module:
    """`fully_shard` each decoder layer, then the root (in place); returns `model`, now an `FSDPModule`."""
    policy = precision_policy(mixed_precision)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def device_mesh(device: torch.device, world_size: int):
    """The 1-D mesh over every process (gloo on CPU, NCCL on GPU: the process group Accelerate formed)."""
    return init_device_mesh(device.type, (world_size,))


@contextlib.contextmanager
def gradients_unsynced(model: nn.Module):
    """Accumulate this micro-batch's gradients unsharded, without reduce-scatter (FSDP2's `no_sync`)."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the sharded gradients to a global L2 norm of `max_norm`; returns the norm before clipping, a plain
    tensor equal on every process (DTensor reductions all-reduce the shards' norms)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def _write_rng_state(path: Path) -> None:
    """This process's RNG states: torch's (and CUDA's) as safetensors, Python's in the metadata (JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(path), metadata={"python": json.dumps(random.getstate())})


def _read_rng_state(path: Path) -> None:
    with safe_open(str(path), framework="pt") as f:
        torch.set_rng_state(f.get_tensor("torch"))
        if "cuda" in f.keys() and torch.cuda.is_available():
            torch.cuda.set_rng_state(f.get_tensor("cuda"))
        version, internal, gauss = json.loads(f.metadata()["python"])
    random.setstate((version, tuple(internal), gauss))


def save_sharded_state(directory: Path, model, optimizer, scheduler, *, rank: int) -> None:
    """Write a resumable state into `directory` (collective): weights and optimizer state as
    `torch.distributed.checkpoint` shards, the schedule (main process, JSON) and each process's RNG state
    (safetensors) — no pickle of isdaa's own."""
    directory = Path(directory)
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(directory / SHARDED_DIR))
    if rank == 0:
        (directory / SCHEDULE_FILE).write_text(json.dumps(scheduler.state_dict()))
    _write_rng_state(directory / f"rng-{rank}.safetensors")


def load_sharded_state(directory: Path, model, optimizer, scheduler, *, rank: int) -> None:
    """Read what `save_sharded_state` wrote into the sharded `model` and its `optimizer` (collective). The
    number of processes must be the one that wrote it (each process reads its own RNG state)."""
    directory = Path(directory)
    rng_file = directory / f"rng-{rank}.safetensors"
    if not (directory / SHARDED_DIR).is_dir() or not rng_file.is_file():
        raise FileNotFoundError(
            f"{directory} holds no sharded state for process {rank} (written by another launch, or by "
            "distributed: accelerate)"
        )
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(directory / SHARDED_DIR))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(json.loads((directory / SCHEDULE_FILE).read_text()))
    _read_rng_state(rng_file)


def full_state_dict(model: nn.Module) -> dict:
    """The whole, unsharded state dict on the main process, in CPU memory (collective; empty elsewhere)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
