"""The hooks `isdaa.train(config, callbacks=[...])` calls, and the one helper that calls them.

A callback is any object; it implements only the hooks it needs (the lab's `LabEvaluator` has `on_log` and
`on_eval`). Every hook runs on the main process only (the other processes go on; the trainer waits for
all of them after an evaluation). A hook that raises stops the run: the exception propagates out of
`isdaa.train`. A hook must not change the weights or the optimizer, or a resumed run stops matching an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

HOOKS = ("on_train_begin", "on_log", "on_eval", "on_train_end")


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
