"""Collation of `Example`s into batches.

- `collate`: 2B right-padded prompt+completion rows (chosen rows first, then rejected rows).
- `collate_shared`: the B prompts once (left-padded) and the chosen / rejected completions apart
  (right-padded), for `isdaa.modeling.logprobs.batch_logps_shared_prompt`.
"""

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
    batch.update(_optional_columns(examples))
    return batch


def _optional_columns(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Each optional column as a (B,) float tensor, for the columns every example has."""
    out = {}
    for col in OPTIONAL_COLUMNS:
        values = [getattr(ex, col) for ex in examples]
        if all(v is not None for v in values):
            out[col] = torch.tensor(values, dtype=torch.float32)
    return out


def pad_ids(seqs: list[list[int]], pad_token_id: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), LongTensors (N, longest): each sequence left- or right-aligned, the rest `pad_token_id`
    with mask 0; an empty sequence is all padding."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def collate_shared(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch B examples with each prompt stored once (for the shared-prompt forward).

    Returns LongTensors `prompt_ids`, `prompt_mask` (B, P) LEFT-padded (the last column holds every
    prompt's last token, which predicts the first completion token); `chosen_ids`, `chosen_mask` (B, C1)
    and `rejected_ids`, `rejected_mask` (B, C2) RIGHT-padded, each completion's mask 1 on all its tokens
    (incl. EOS). Optional columns as in `collate`. The same pairs as `collate(examples, pad_token_id)`, so
    `batch_logps_shared_prompt(model, *[batch[k] for k in SHARED_KEYS])` equals `batch_logps(model, collate(...))`
    up to float rounding.
    """
    if len(examples) == 0:
        raise ValueError("collate_shared needs at least one example")
    if pad_token_id is None:
        raise ValueError("collate_shared needs a pad_token_id (the tokenizer has no pad token)")
    if any(not ex.prompt_ids for ex in examples):
        raise ValueError("collate_shared needs a non-empty prompt in every example")
    prompt_ids, prompt_mask = pad_ids([ex.prompt_ids for ex in examples], pad_token_id, left=True)
    chosen_ids, chosen_mask = pad_ids([ex.chosen_ids for ex in examples], pad_token_id, left=False)
    rejected_ids, rejected_mask = pad_ids([ex.rejected_ids for ex in examples], pad_token_id, left=False)
    batch = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "chosen_ids": chosen_ids, "chosen_mask": chosen_mask,
        "rejected_ids": rejected_ids, "rejected_mask": rejected_mask,
    }
    batch.update(_optional_columns(examples))
    return batch


# argument order of `isdaa.modeling.logprobs.batch_logps_shared_prompt`
SHARED_KEYS = ("prompt_ids", "prompt_mask", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask")
