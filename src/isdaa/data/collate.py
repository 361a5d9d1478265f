"""Collation of `Example`s into a right-padded batch: chosen rows first, then rejected rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from isdaa.data.tokenization import Example
from isdaa.data.validation import OPTIONAL_COLUMNS


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch B examples into 2B right-padded sequences.

    Returns `input_ids`, `attention_mask`, `completion_mask` (LongTensor (2B, T)): rows 0..B-1 are
    prompt+chosen, rows B..2B-1 prompt+rejected; `completion_mask` is 1 on response tokens (incl. EOS).
    Each optional column (`behavior_*_logps`, `ref_*_logps`, `weight`) becomes a FloatTensor (B,) when
    every example has it, and is left out otherwise.
    """
    if len(examples) == 0:
        raise ValueError("collate needs at least one example")
    if pad_token_id is None:
        raise ValueError("collate needs a pad_token_id (the tokenizer has no pad token)")
    pairs = [(ex.prompt_ids, ex.chosen_ids) for ex in examples] + [(ex.prompt_ids, ex.rejected_ids) for ex in examples]
    width = max(len(p) + len(c) for p, c in pairs)
    input_ids = torch.full((len(pairs), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    completion_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, c) in enumerate(pairs):
        n = len(p) + len(c)
        input_ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attention_mask[i, :n] = 1
        completion_mask[i, len(p) : n] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    for col in OPTIONAL_COLUMNS:
        values = [getattr(ex, col) for ex in examples]
        if all(v is not None for v in values):
            batch[col] = torch.tensor(values, dtype=torch.float32)
    return batch
