"""Why a run stops before its last step, as the loop asks after each optimizer step: too many non-finite steps in
a row, a stop signal (`signals.py`), or a callback's `stop_requested` (`callbacks.py`). Each is a `StopRequest`;
`Trainer.stop` acts on all of them the same way (one checkpoint, then the error or the end of the loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from isdaa.errors import RunInterrupted, TrainingStopped
from isdaa.training.loop_state import LoopState
from isdaa.training.signals import StopSignals, exit_code, stop_event, stop_message


@dataclass
class StopRequest:
    """Why the loop stops after a step: a callback's `reason` (the run then finishes normally: the last
    evaluation, `final/`), or `error(checkpoint)`, raised once the step's checkpoint is written (no `final/`)."""

    reason: str | None = None
    error: Callable[[Path], Exception] | None = None


def bad_steps_stop(state: LoopState, max_bad_steps: int) -> StopRequest | None:
    """`TrainingStopped` once `max_bad_steps` steps in a row had a non-finite loss or gradient."""
    step, streak = state.step, state.bad_streak
    if streak < max_bad_steps:
        return None
    return StopRequest(error=lambda path: TrainingStopped(
        f"stopped at step {step}: {streak} consecutive steps with a non-finite loss or gradient "
        f"(checkpoint saved to {path}); lower the learning rate or check the data"))


def signal_stop(signals: StopSignals, accelerator, step: int, last: int) -> StopRequest | None:
    """After a SIGTERM / SIGUSR1 / Ctrl-C on any process (the same step on all): `RunInterrupted` (exit 128 +
    the signal number). At the last step the run just finishes."""
    if step >= last:
        return None
    signum = signals.received_by_any(accelerator)
    if signum is None:
        return None
    return StopRequest(error=lambda path: RunInterrupted(
        stop_message(signum, step, path), exit_code(signum), event=stop_event(signum, step)))
