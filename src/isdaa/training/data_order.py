"""The order in which a run sees its training pairs.

Epoch e is a permutation of the examples seeded by (seed, e) alone, so a run resumed at step N (the
first batches of its epoch skipped) sees exactly the batches an uninterrupted run would, on any number
of processes (Accelerate shards each global batch).

Length grouping (`data.group_by_length`) stays a pure function of (seed, epoch) and of the examples'
lengths: the permutation is cut into windows of `GROUPING_WINDOW` optimizer steps; inside a window the
examples are sorted by the lengths that decide a batch's padding, and cut into groups of one optimizer
step's global batch (batch_size × processes × grad_accum); the groups of the whole epoch are then shuffled
with the same generator. With the shared-prompt layout a batch pads its prompts to the longest prompt and
its completions to the longest completion, so the sort is two-level: by prompt length, then, inside strips
of about √(groups per window) groups, by the longer completion. With the concatenated layout a row is
prompt + completion, so the sort is by `isdaa.data.length` alone. A step therefore holds the same pairs
whatever the number of processes or the split into micro-batches (its consecutive slices are its
micro-batches and their per-process shards), and a resumed run skips to the same place. The
`len(examples) % group` examples left over come last (the last, incomplete step is not run).
"""

from __future__ import annotations

import math

import torch

from isdaa.data import length

# Steps per sorting window: wider windows pad less but make a batch's companions less random.
GROUPING_WINDOW = 64


def grouping_keys(examples, shared_prompt: bool) -> list[tuple[int, int]]:
    """(first, second) sort key of each example: (prompt, longer completion) lengths for the shared-prompt
    layout; (prompt + longer completion, 0) for the concatenated one."""
    if shared_prompt:
        return [(len(e.prompt_ids), max(len(e.chosen_ids), len(e.rejected_ids))) for e in examples]
    return [(length(e), 0) for e in examples]


def length_grouped(order: list[int], keys: list[tuple[int, int]], group: int, generator: torch.Generator) -> list[int]:
    """`order` (a permutation) rearranged so that each consecutive `group` of it holds examples of similar
    `keys` (two-level sort, longest first; see the module docstring), the groups in a random order drawn
    from `generator`."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    full = len(order) // group * group
    groups = []
    for start in range(0, full, GROUPING_WINDOW * group):
        window = order[start : min(start + GROUPING_WINDOW * group, full)]
        strip = group * max(1, round(math.sqrt(len(window) // group)))
        window = sorted(window, key=lambda i: -keys[i][0])  # stable: ties keep the permutation's order
        for s in range(0, len(window), strip):
            strip_sorted = sorted(window[s : s + strip], key=lambda i: -keys[i][1])
            groups.extend(strip_sorted[k : k + group] for k in range(0, len(strip_sorted), group))
    shuffled = [i for g in torch.randperm(len(groups), generator=generator).tolist() for i in groups[g]]
    return shuffled + order[full:]


class EpochOrder(torch.utils.data.Dataset):
    """The examples of one epoch, in the order of a permutation seeded by (seed, epoch); with `group` > 0,
    length-grouped into consecutive groups of `group` examples for the batch layout `shared_prompt`."""

    def __init__(self, examples, seed: int, epoch: int, group: int = 0, shared_prompt: bool = False):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(examples), generator=generator).tolist()
        if group:
            self.order = length_grouped(self.order, grouping_keys(examples, shared_prompt), group, generator)
        self.examples = examples

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.examples[self.order[i]]


def epoch_batches(
    accelerator, examples, *, seed: int, epoch: int, batch_size: int, collate_fn, skip: int = 0, group: int = 0,
    shared_prompt: bool = False,
):
    """An iterator over the per-process batches of epoch `epoch` (incomplete last batch dropped), on the
    accelerator's device, after skipping the first `skip` batches (a resumed run). `group` > 0: length-grouped
    by optimizer step (`group` = the global batch of one step) for the layout `shared_prompt`."""
    loader = torch.utils.data.DataLoader(
        EpochOrder(examples, seed, epoch, group, shared_prompt), batch_size=batch_size, shuffle=False, drop_last=True,
        collate_fn=collate_fn,
    )
    loader = accelerator.prepare_data_loader(loader)
    return iter(accelerator.skip_first_batches(loader, skip) if skip else loader)
