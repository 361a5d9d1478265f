"""`model.compile`: torch.compile (inductor) of the policy's elementwise-heavy blocks.

What is compiled: each decoder layer's MLP (gate/up projections, SiLU × up, down projection: inductor fuses
the activation and the product into one kernel) and every RMSNorm / LayerNorm (the square, mean, rsqrt and
two products in one kernel). One compiled function per module class, shared by all its instances, so the 30
layers of a SmolLM2-shaped model cost one compilation (plus one recompilation when sequence lengths first
change, after which those dimensions are dynamic).

What is not: the attention and the whole decoder layer. They read and write the KV cache, whose per-layer
index becomes a guard — a 30-layer model recompiles per layer and hits dynamo's recompile limit (transformers'
decoder layer under `module.compile()` falls back to eager) — and
the prompt-shared forward needs that cache.

Each target's `forward` is replaced on the instance by `functools.partial(compiled_class_forward, module)`:
`copy.deepcopy` (the frozen reference) then binds the copy to its own weights, and the module's hooks
(FSDP2, PEFT) and isdaa's layer checkpointing stay around it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

__all__ = ["compile_blocks", "compiled_modules"]

_COMPILED: dict[type, object] = {}  # module class -> torch.compile(class.forward)


def _is_norm(module: nn.Module) -> bool:
    return type(module).__name__.endswith(("RMSNorm", "LayerNorm"))


def _targets(model: nn.Module) -> list[nn.Module]:
    mlps = [layer.mlp for layer in model.modules() if isinstance(layer, GradientCheckpointingLayer)
            and isinstance(getattr(layer, "mlp", None), nn.Module)]
    return mlps + [m for m in model.modules() if _is_norm(m)]


def compiled_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` whose forward `compile_blocks` replaced."""
    return [m for m in model.modules() if getattr(m, "_isdaa_compiled", False)]


def compile_blocks(model: nn.Module) -> int:
    """Compile the MLPs and norms of `model` in place (lazily: the first forward compiles); returns how many
    modules. ValueError when there is nothing to compile."""
    targets = _targets(model)
    if not targets:
        raise ValueError(f"{type(model).__name__}: no decoder-layer MLP or norm to compile")
    for module in targets:
        cls = type(module)
        if cls not in _COMPILED:
            _COMPILED[cls] = torch.compile(cls.forward)
        module.forward = functools.partial(_COMPILED[cls], module)
        module._isdaa_compiled = True
    return len(targets)
