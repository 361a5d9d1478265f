"""Argument checks shared by the objective functions (pure torch, no side effects).

Every failure is a `ValueError` whose message names the offending argument and what was expected.
"""

import math

import torch


def check_positive(name: str, value) -> float:
    """Return `value` as a float, or raise if it is not a finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_vectors(**tensors: torch.Tensor | None) -> int:
    """All given (non-None) tensors must be 1-D of one common length B >= 1; return B."""
    size = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (B,), got {type(t).__name__}")
        if t.dim() != 1:
            raise ValueError(f"{name} must have shape (B,), got {tuple(t.shape)}")
        if size is None:
            size = t.shape[0]
        elif t.shape[0] != size:
            shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
            raise ValueError(f"all inputs must share the batch size B; got shapes {shapes}")
    if size is None:
        raise ValueError("no input tensors given")
    if size == 0:
        raise ValueError("empty batch: inputs must have shape (B,) with B >= 1")
    return size


def lengths_as(name: str, lengths: torch.Tensor | None, like: torch.Tensor, needed_by: str) -> torch.Tensor:
    """Token counts as a float tensor matching `like`; raise if missing or not all > 0."""
    if lengths is None:
        raise ValueError(f"{needed_by} needs {name} (response token counts, shape (B,))")
    lengths = torch.as_tensor(lengths, device=like.device)
    if lengths.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(lengths.shape)}")
    lengths = lengths.to(like.dtype)
    if not bool((lengths > 0).all()):
        raise ValueError(f"{name} must be > 0 for every example (token counts)")
    return lengths


def check_finite(name: str, t: torch.Tensor, what: str) -> None:
    """Raise if `t` holds NaN or +-inf."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(
            f"{name}: {what} must be finite; got {int(bad.sum())} NaN/inf value(s) of {t.numel()}"
        )
