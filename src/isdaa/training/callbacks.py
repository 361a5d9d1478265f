"""The hooks `isdaa.train(config, callbacks=[...])` calls, and the one helper that calls them.

A callback is any object; it implements only the hooks it needs (the lab's `LabEvaluator` has `on_log` and
`on_eval`). Every hook runs on the main process only (the other processes go on; the trainer waits for
all of them after an evaluation), except `on_step_end`, which runs on every process. A hook that raises
stops the run: the exception propagates out of `isdaa.train`. A hook must not change the weights or the
optimizer, or a resumed run stops matching an uninterrupted one.

Stopping: a callback whose `stop_requested` attribute holds a reason (a non-empty string) after its
`on_step_end` ends the run after that step: the trainer saves a checkpoint of the step (unless it is the
last), writes `{"step": N, "stop_reason": ...}` to `metrics.jsonl`, evaluates, saves `final/`, prints one
line and returns normally with `TrainResult.stop_reason` set (exit 0). A later run in the same directory
resumes from that checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

HOOKS = ("on_train_begin", "on_log", "on_eval", "on_step_end", "on_train_end")


@dataclass
class RunHandle:
    """What `on_step_end` may use of the run. `log(step, metrics)` writes one record to `metrics.jsonl`
    and the trackers (the main process writes; every process may call it); `save_model(name)` writes the
    policy like `final/` to `<run_dir>/<name>/` (atomic; collective: every process must call it)."""

    model: object  # the unwrapped policy (a PEFT model under LoRA), in eval mode during the hook
    tokenizer: object
    accelerator: object
    run_dir: Path
    total_steps: int
    lora: bool
    log: Callable[[int, dict], None]
    save_model: Callable[[str], Path]


class Callback(Protocol):
    """Every hook the trainer calls, in the order a run calls them, with its signature. Each is optional
    (`call_hook` skips a missing one), so a callback need not match this protocol as a whole: it documents
    the hooks; it is no base class and no `isinstance` test."""

    def on_train_begin(self, model, tokenizer) -> None:
        """Once, before the first step (also on a resumed run): the unwrapped policy (a PEFT model under
        LoRA) and the tokenizer. The model is the one being trained: a forward hook set here stays."""

    def on_log(self, step: int, metrics: dict) -> None:
        """After each logged optimizer step (every `log_every`, the last step, and every skipped
        non-finite step), with the metrics just written to `metrics.jsonl` (gathered over processes)."""

    def on_eval(self, step: int, model, tokenizer) -> None:
        """At each evaluation, after the held-out metrics are logged: step 0 of a fresh run, every
        `eval_every` steps before the last, and the last step. `model` is the unwrapped policy in eval
        mode (put back in train mode after the hook returns)."""

    def on_step_end(self, step: int, run: RunHandle) -> None:
        """On every process (a collective hook: every process must make the same collective calls), after
        each optimizer step once its log, checkpoint and evaluation are done, and with step 0 before the first
        step of a fresh run. Set `stop_requested` (see the module docstring) to end the run after `step`."""

    def on_train_end(self, result) -> None:
        """Once, after `final/` is written, with the `TrainResult` that `isdaa.train` returns."""


def has_hook(callbacks: Iterable, name: str) -> bool:
    """Whether any of `callbacks` implements hook `name` (lets the trainer skip work nobody asked for)."""
    return any(hasattr(cb, name) for cb in callbacks)


def call_hook(callbacks: Iterable, name: str, *args) -> None:
    """Call hook `name` with `args` on each callback that implements it, in list order."""
    if name not in HOOKS:
        raise ValueError(f"unknown callback hook '{name}'; the trainer calls {', '.join(HOOKS)}")
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


def requested_stop(callbacks: Iterable) -> str | None:
    """The first `stop_requested` reason among `callbacks`, or None (see the module docstring)."""
    for cb in callbacks:
        reason = getattr(cb, "stop_requested", None)
        if reason:
            return str(reason)
    return None
