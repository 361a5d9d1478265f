"""Activation checkpointing of each decoder layer that keeps the KV cache — hence prompt sharing — working.

transformers' own `gradient_checkpointing_enable()` drops the cache of a checkpointed layer (a layer that
appends its keys/values to the cache would append them a second time when the backward replays it), which
would force the concatenated forward. Here each decoder layer's `forward` is replaced, on the instance, by

    torch.utils.checkpoint.checkpoint(<the class's forward>, ..., use_reentrant=False)

with the cache seen through a `_ReplaySafeCache`: the forward's `update` goes to the model's cache as usual,
after a shallow copy of that cache layer as it was before is kept; the backward's replay `update`s a fresh
copy of that snapshot instead, so it gets the same keys/values (the prompt's, then its own) and leaves the
model's cache alone. Only the layer's inputs and the snapshot's tensors (the keys/values it attended to) are
kept for the backward; everything inside the layer is recomputed there. Gradients flow exactly as without
checkpointing, through the prompt's keys/values into the prompt forward.

The layer's module hooks (FSDP2's unshard/reshard, PEFT's, transformers' output recorder) stay outside the
checkpoint, because the instance `forward` is what `nn.Module.__call__` runs between them. Works for caches
whose layers grow by reassignment (`DynamicLayer` and its subclasses: `DynamicCache`, the one transformers
builds by default); a cache layer written in place (a static cache) is refused with a ValueError.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.cache_utils import DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

__all__ = ["enable_layer_checkpointing", "checkpointed_layers"]

_CACHE_KWARGS = ("cache", "past_key_values")  # transformers 5 names of the layer's cache argument


class _ReplaySafeCache:
    """The model's cache as one checkpointed layer call sees it: the first `update` of a cache layer (the
    forward) writes to the model's cache; any later one (the backward's replay) updates a copy of that cache
    layer as it was before the forward, returning the same tensors without touching the model's cache.
    Everything else is read from the model's cache."""

    def __init__(self, cache):
        self._cache = cache
        self._before: dict[int, object] = {}

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        if layer_idx in self._before:  # the replay
            return copy.copy(self._before[layer_idx]).update(key_states, value_states, *args, **kwargs)
        self._before[layer_idx] = self._snapshot(layer_idx)
        return self._cache.update(key_states, value_states, layer_idx, *args, **kwargs)

    def _snapshot(self, layer_idx: int):
        layers = self._cache.layers
        if layer_idx < len(layers):
            layer = layers[layer_idx]
        else:  # a cache that creates its layers lazily: the replay starts from a fresh, empty one
            layer = self._cache.layer_class_to_replicate()
        if not isinstance(layer, DynamicLayer):
            raise ValueError(
                f"isdaa layer checkpointing needs a cache whose layers grow by reassignment (DynamicLayer); "
                f"got {type(layer).__name__}"
            )
        return copy.copy(layer)

    def __getattr__(self, name):
        return getattr(self._cache, name)


def _checkpointed_forward(layer: nn.Module, *args, **kwargs):
    """`type(layer).forward(layer, ...)`, checkpointed (non-reentrant) when training with grad enabled."""
    forward = type(layer).forward
    if not (layer.training and torch.is_grad_enabled()):
        return forward(layer, *args, **kwargs)
    for name in _CACHE_KWARGS:
        if kwargs.get(name) is not None:
            kwargs[name] = _ReplaySafeCache(kwargs[name])
    return checkpoint(forward, layer, *args, use_reentrant=False, **kwargs)


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of `model` whose forward `enable_layer_checkpointing` replaced."""
    return [m for m in model.modules() if getattr(m, "_isdaa_checkpointed", False)]


def enable_layer_checkpointing(model: nn.Module) -> int:
    """Checkpoint every decoder layer of `model` (each transformers `GradientCheckpointingLayer`), keeping
    the KV cache usable; returns how many layers. ValueError when the model has none, or when transformers'
    own gradient checkpointing is already on (it would drop the cache first)."""
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        raise ValueError("transformers' gradient checkpointing is on; isdaa's layer checkpointing replaces it")
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no transformers decoder layers (GradientCheckpointingLayer)")
    for layer in layers:
        layer.forward = functools.partial(_checkpointed_forward, layer)
        layer._isdaa_checkpointed = True
    return len(layers)
