"""What the training loop carries from one optimizer step to the next, in one object that a checkpoint saves and
a resumed run restores whole (`trainer_state.json` of `checkpoint.py`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class LoopState:
    """The loop's counters: `step` optimizer steps done, the `epoch` they are in, how many steps were skipped
    (a non-finite loss or gradient) and how many of the last ones in a row (`bad_streak`)."""

    skipped_steps: int = 0
    bad_streak: int = 0
    epoch: int = 0
    step: int = 0

    @classmethod
    def from_checkpoint(cls, saved: dict) -> LoopState:
        """The state a checkpoint's `trainer_state.json` holds."""
        return cls(**{f.name: saved[f.name] for f in fields(cls)})

    def to_checkpoint(self) -> dict:
        """What `trainer_state.json` stores."""
        return asdict(self)

    def position(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epoch, steps done in it) of the next step: where the seeded epoch order (`data_order.py`) resumes."""
        return divmod(self.step, steps_per_epoch)

    def advance(self, finite: bool) -> None:
        """One more optimizer step done, skipped (non-finite) or not."""
        self.step += 1
        if finite:
            self.bad_streak = 0
        else:
            self.skipped_steps += 1
            self.bad_streak += 1
