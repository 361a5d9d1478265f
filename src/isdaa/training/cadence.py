"""When periodic work of the loop is due: logging, checkpoints, evaluations (each says itself, so the loop holds
no modulo tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cadence:
    """Every `every` optimizer steps (0: never) before the last step, and at the last step too when `at_last`
    (a checkpoint or evaluation of the last step is left to the end of the run; its log line is not)."""

    every: int
    at_last: bool = False

    def due(self, step: int, *, last: int) -> bool:
        """Whether the work is due after `step` optimizer steps of a run of `last`."""
        if step == last:
            return self.at_last
        return bool(self.every) and step % self.every == 0
