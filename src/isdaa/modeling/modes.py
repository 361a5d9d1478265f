"""`eval_mode`: a model in eval mode (no dropout) for a block, then back in the mode it was in — for the no-grad
scoring and sampling passes that run between a policy's training steps."""

from __future__ import annotations

import contextlib

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """`model` in eval mode for the block, then back in the mode it was in (also when the block raises)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
