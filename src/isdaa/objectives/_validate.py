"""Argument checks shared by the objective functions (pure torch, no side effects).

Every failure is a `ValueError` whose message names the offending argument and what was expected. A bad
ARGUMENT (a loss or weighting name, β, ε, η, a hyper-parameter) raises the subclass
`ObjectiveArgumentError`, whose `.argument` says which one, so that a caller can name its own option;
bad tensors (shapes, NaN/inf) raise a plain `ValueError`.
"""

import difflib
import math
from collections.abc import Iterable

import torch


class ObjectiveArgumentError(ValueError):
    """A bad argument of the objectives. `argument` is one of "loss", "weighting", "beta", "eps", "ess_target",
    "sft_eta", "label_smoothing", "hparams" (from `Objective.from_config`: the config field, e.g. "is_eps");
    `str(exc)` is the message alone."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


def check_choice(argument: str, value, choices: Iterable[str]) -> None:
    """Raise ObjectiveArgumentError(argument) unless `value` is one of `choices`; the message suggests the
    closest choice: "unknown value 'sigmod' (did you mean 'sigmoid'?); expected one of sigmoid, ipo, ..."."""
    choices = list(choices)
    if value in choices:
        return
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ObjectiveArgumentError(argument, f"unknown value '{value}'{hint}; expected one of {', '.join(choices)}")


def as_number(name: str, value, *, argument: str = "hparams") -> float:
    """Return `value` as a float (any number, not checked further), or raise ObjectiveArgumentError."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ObjectiveArgumentError(argument, f"{name} must be a number, got {value!r}") from None


def check_positive(name: str, value, *, argument: str | None = None) -> float:
    """Return `value` as a float, or raise ObjectiveArgumentError(`argument`, default `name`) if it is not
    a finite number > 0."""
    argument = name if argument is None else argument
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ObjectiveArgumentError(argument, f"{name} must be a number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ObjectiveArgumentError(argument, f"{name} must be a finite number > 0, got {value!r}")
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
