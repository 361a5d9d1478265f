"""Stop signals of a training run: SIGTERM (a scheduler before it kills a job), SIGUSR1 (what some schedulers
send first) and SIGINT (Ctrl-C).

While the loop runs, a handler only records the signal. The loop asks `StopSignals.received_by_any` after each
optimizer step (under DDP/FSDP an all-reduce of the flag, so every process stops after the same step), writes a
complete checkpoint and raises `isdaa.errors.RunInterrupted`, whose exit code is 128 + the signal number:
143 for SIGTERM, 138 for SIGUSR1, 130 for Ctrl-C. A second Ctrl-C does not wait: it raises KeyboardInterrupt at
once (nothing half-written: checkpoints are atomic). Outside the loop (set-up) the signals keep their usual
meaning. Python can set handlers only in the main thread: elsewhere (a training started from a thread)
`StopSignals` installs nothing and the signals act as usual.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name))


def exit_code(signum: int) -> int:
    """The exit code of a run stopped by signal `signum`: 128 + its number, as a shell reports a killed process."""
    return 128 + int(signum)


def stop_event(signum: int, step: int) -> str:
    """What stopped a run, and when: "preempted (SIGTERM) at step 3", "interrupted (Ctrl-C) at step 3"."""
    name = signal.Signals(signum).name
    what = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"preempted ({name})"
    return f"{what} at step {step}"


def stop_message(signum: int, step: int, checkpoint: Path | str) -> str:
    """The one line a stopped run prints (without the `isdaa: ` prefix)."""
    return f"{stop_event(signum, step)}; checkpoint {checkpoint}; run the same command to resume"


class StopSignals:
    """A context manager: while active, SIGTERM / SIGUSR1 / SIGINT are recorded instead of acting (the first one
    received is kept); the previous handlers come back on exit."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is the closest
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now, without waiting for the step to end
        if self.received is None:
            self.received = signum

    def received_by_any(self, accelerator) -> int | None:
        """The signal received by this process or, with several processes, by any of them (an all-reduce: every
        process must call this at the same step); None when there was none."""
        received = self.received or 0
        if accelerator.num_processes > 1:
            flag = torch.tensor(float(received), device=accelerator.device)
            received = int(accelerator.reduce(flag, "max").item())
        return received or None
