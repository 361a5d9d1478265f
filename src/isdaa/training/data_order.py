"""The order in which a run sees its training pairs.

Epoch e is a permutation of the examples seeded by (seed, e) alone, so a run resumed at step N (the
first batches of its epoch skipped) sees exactly the batches an uninterrupted run would, on any number
of processes (Accelerate shards each global batch).
"""

from __future__ import annotations

import torch


class EpochOrder(torch.utils.data.Dataset):
    """The examples of one epoch, in the order of a permutation seeded by (seed, epoch)."""

    def __init__(self, examples, seed: int, epoch: int):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(examples), generator=generator).tolist()
        self.examples = examples

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.examples[self.order[i]]


def epoch_batches(accelerator, examples, *, seed: int, epoch: int, batch_size: int, collate_fn, skip: int = 0):
    """An iterator over the per-process batches of epoch `epoch` (incomplete last batch dropped), on the
    accelerator's device, after skipping the first `skip` batches (a resumed run)."""
    loader = torch.utils.data.DataLoader(
        EpochOrder(examples, seed, epoch), batch_size=batch_size, shuffle=False, drop_last=True,
        collate_fn=collate_fn,
    )
    loader = accelerator.prepare_data_loader(loader)
    return iter(accelerator.skip_first_batches(loader, skip) if skip else loader)
