"""The loop's pieces that hold no model: `LoopState`, `Cadence`, and reference log-probs attached to copies."""

import torch

from isdaa.data.tokenization import Example
from isdaa.training.cadence import Cadence
from isdaa.training.loop_state import LoopState
from isdaa.training.reference_cache import attach_reference_logps


def test_loop_state_counts_steps_and_round_trips_through_a_checkpoint():
    state = LoopState()
    for finite in (True, False, False):
        state.advance(finite)
    assert (state.step, state.skipped_steps, state.bad_streak) == (3, 2, 2)
    state.advance(True)
    assert state.bad_streak == 0
    assert LoopState.from_checkpoint({**state.to_checkpoint(), "extra": 1}) == state
    assert LoopState(step=7).position(3) == (2, 1)


def test_cadence_is_due_every_n_steps_before_the_last():
    assert [s for s in range(9) if Cadence(4).due(s, last=8)] == [0, 4]
    assert [s for s in range(8) if Cadence(4, at_last=True).due(s, last=7)] == [0, 4, 7]
    assert not any(Cadence(0).due(s, last=5) for s in range(6))


def test_attach_reference_logps_returns_copies():
    examples = [Example([1], [2], [3]), Example([4], [5], [6])]
    attached = attach_reference_logps(examples, torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -4.0]))
    assert [(e.ref_chosen_logps, e.ref_rejected_logps) for e in attached] == [(-1.0, -3.0), (-2.0, -4.0)]
    assert all(e.ref_chosen_logps is None for e in examples)
