"""Prompts run once, their KV cache kept: completions of those prompts then cost only their own tokens.

`PromptCache.encode(model, prompt_ids, group_size)` runs the prompts (left-padded, in groups of `group_size`) with
`use_cache=True` and keeps, per group, the prompt mask, the KV cache and the logits of each prompt's last token
(they predict a completion's first token). Two users:

- sampling (`isdaa.generation.sample_completions(..., shared_prefill=True)`): each prompt is prefilled once for
  all its `n` samples, the cache repeated n times (`Cache.batch_repeat_interleave`);
- scoring (`completion_logps`): the summed log-probs of completions of those prompts, teacher-forced on top of a
  copy of the cache — the same numbers as `isdaa.modeling.logprobs.sequence_logps` on prompt + completion, up
  to float rounding. A frozen model's cache (the reference in an evaluation) is valid for every evaluation of
  the same prompts, so the lab computes it once per run.

Memory: 2 × layers × KV heads × head size × 4 bytes per prompt token (SmolLM2-135M: 46 kB; 64 prompts of 50 tokens
~150 MB).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from isdaa.data.collate import pad_ids
from isdaa.modeling.logprobs import (cache_argument, completion_forward, output_head, position_ids_from_mask,
                                     token_logps_from_hidden)
from isdaa.modeling.modes import eval_mode

__all__ = ["PromptCache", "PromptGroup", "prefill", "completion_logps"]


@dataclass
class PromptGroup:
    """Prompts `indices` run together: their left-padded mask (G, P), KV cache and last-token logits (G, V)."""

    indices: list[int]
    mask: Tensor
    cache: object
    last_logits: Tensor


def prefill(model: nn.Module, prompt_ids: list[list[int]], pad_id: int) -> tuple[Tensor, object, Tensor]:
    """Run `prompt_ids` once, left-padded: (mask (G, P), KV cache, fp32 logits of each last token (G, V))."""
    device = next(model.parameters()).device
    ids, mask = pad_ids(prompt_ids, pad_id, left=True)
    ids, mask = ids.to(device), mask.to(device)
    kw = cache_argument(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True,
                logits_to_keep=1)
    cache = getattr(out, kw, None)
    if cache is None:
        raise ValueError("the model returned no KV cache for use_cache=True")
    return mask, cache, out.logits[:, -1].float()  # left padding: the last column is every prompt's last token


@dataclass
class PromptCache:
    """The prompts' groups (`PromptGroup`), each prompt in one; `group_of[i]` = (group number, row in it)."""

    groups: list[PromptGroup]
    group_of: dict[int, tuple[int, int]]

    @classmethod
    def encode(cls, model: nn.Module, prompt_ids: list[list[int]], *, group_size: int, pad_id: int) -> PromptCache:
        """Run every prompt once (no gradient), `group_size` prompts per forward."""
        groups, group_of = [], {}
        with torch.no_grad(), eval_mode(model):
            for start in range(0, len(prompt_ids), group_size):
                indices = list(range(start, min(start + group_size, len(prompt_ids))))
                mask, cache, logits = prefill(model, [prompt_ids[i] for i in indices], pad_id)
                for row, i in enumerate(indices):
                    group_of[i] = (len(groups), row)
                groups.append(PromptGroup(indices, mask, cache, logits))
        return cls(groups, group_of)


def completion_logps(model: nn.Module, prompts: PromptCache, prompt_index: list[int],
                     completion_ids: list[list[int]], *, batch_size: int = 64) -> Tensor:
    """Summed log-probs (N,) fp32 on CPU of completion k given prompt `prompt_index[k]` of `prompts`, teacher-forced
    on copies of the prompts' caches (no gradient, eval mode; the caches are left as they are)."""
    out = torch.zeros(len(completion_ids), dtype=torch.float32)
    by_group: dict[int, list[int]] = {}
    for k, i in enumerate(prompt_index):
        if not completion_ids[k]:
            raise ValueError(f"completion {k} has no tokens")
        by_group.setdefault(prompts.group_of[i][0], []).append(k)
    with torch.no_grad(), eval_mode(model):
        for g, ks in by_group.items():
            for start in range(0, len(ks), batch_size):
                chunk = ks[start : start + batch_size]
                rows = [prompts.group_of[prompt_index[k]][1] for k in chunk]
                out[torch.tensor(chunk)] = _group_logps(model, prompts.groups[g], rows,
                                                        [completion_ids[k] for k in chunk]).cpu()
    return out


def _group_logps(model: nn.Module, group: PromptGroup, rows: list[int], completions: list[list[int]]) -> Tensor:
    """Summed log-probs of `completions`, completion j continuing the group's prompt `rows[j]`."""
    device = group.mask.device
    comp_ids, comp_mask = pad_ids(completions, 0, left=False)
    comp_ids, comp_mask = comp_ids.to(device), comp_mask.to(device)
    select = torch.tensor(rows, device=device)
    cache = copy.deepcopy(group.cache)
    cache.batch_select_indices(select)
    hidden = completion_forward(model, comp_ids, comp_mask, group.mask[select], cache, cache_argument(model))
    first = group.last_logits[select].log_softmax(-1).gather(-1, comp_ids[:, :1]).squeeze(-1)  # token 0
    rest_rows, rest_cols = comp_mask[:, 1:].bool().nonzero(as_tuple=True)  # token j+1 from hidden row j
    rest = token_logps_from_hidden(output_head(model), hidden[rest_rows, rest_cols], comp_ids[rest_rows, rest_cols + 1])
    return first.float().index_add(0, rest_rows, rest)
