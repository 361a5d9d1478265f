"""Summed response-token log-probs of a causal LM, without materialising the full logits.

For a sequence x_0 … x_{T-1} and a response mask m, the quantity is

    log π(y | x) = Σ_{t ≥ 1, m_t = 1} log softmax(W h_{t-1})[x_t]

where h is the decoder's final (post-norm) hidden state and W the output embedding: the logits at t−1 predict
the token at t. Only the hidden rows that predict a response token go through W, `chunk_size` rows at a
time, and the log-softmax is taken in fp32 per chunk, so the (N, T, V) logits are never built.

Entry points
- `sequence_logps(model, input_ids, attention_mask, completion_mask)` → (summed (N,), lengths (N,))
- `batch_logps(model, batch)` → chosen/rejected log-probs and lengths for a collated batch (one forward)
- `batch_logps_shared_prompt(...)` → the same numbers, running each prompt once and reusing its KV cache
  for the chosen and the rejected completion
- `mean_logps(summed, lengths)` → per-token mean

The model is called through its own `forward` (so DDP, Accelerate's autocast wrapper and PEFT wrappers stay
in the loop) with `output_hidden_states=True, logits_to_keep=1`; in transformers 5 the last hidden state
returned is the decoder's `last_hidden_state`, i.e. after the final norm. Models whose logits are not a
plain `lm_head(h)` (final logit soft-capping, logit scaling) are rejected. This module knows nothing about
losses.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "sequence_logps",
    "batch_logps",
    "batch_logps_shared_prompt",
    "mean_logps",
    "position_ids_from_mask",
    "token_logps_from_hidden",
    "response_targets",
    "response_logps_from_hidden",
    "split_pairs",
    "unwrap_model",
    "cache_argument",
    "output_head",
    "final_hidden",
    "completion_forward",
]


# ---------------------------------------------------------------------------------------------- helpers


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids (N, T) long from an attention mask (N, T): cumsum − 1, clamped at 0.

    The first real token of every row gets position 0 whatever the padding side; pad slots get 0 (left
    padding) or repeat the last position (right padding) — they are masked out anyway.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP / DataParallel / torch.compile / PEFT wrappers."""
    while True:
        inner = getattr(model, "module", None)  # DistributedDataParallel, DataParallel
        if isinstance(inner, nn.Module):
            model = inner
            continue
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if isinstance(inner, nn.Module):
            model = inner
            continue
        break
    if hasattr(model, "get_base_model"):  # peft.PeftModel: the base model with the adapters injected
        model = model.get_base_model()
    return model


def output_head(model: nn.Module) -> nn.Module:
    hf = unwrap_model(model)
    config = getattr(hf, "config", None)
    if getattr(config, "final_logit_softcapping", None) is not None:
        raise ValueError("isdaa.modeling.logprobs: models with final_logit_softcapping are not supported")
    if getattr(config, "logit_scale", 1.0) not in (None, 1.0):
        raise ValueError("isdaa.modeling.logprobs: models with logit_scale != 1 are not supported")
    head = hf.get_output_embeddings()
    if head is None:
        raise ValueError(f"isdaa.modeling.logprobs: {type(hf).__name__} has no output embedding (lm_head)")
    return head


def final_hidden(out) -> Tensor:
    hidden_states = getattr(out, "hidden_states", None)
    if not hidden_states:
        raise ValueError("isdaa.modeling.logprobs: the model returned no hidden_states for output_hidden_states=True")
    return hidden_states[-1]


def _check_masks(input_ids: Tensor, *masks: Tensor) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be 2-D (N, T), got shape {tuple(input_ids.shape)}")
    for m in masks:
        if m.shape != input_ids.shape:
            raise ValueError(f"masks must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(m.shape)}")


def _chunk_logps(head: nn.Module, hidden: Tensor, labels: Tensor) -> Tensor:
    """(M, H), (M,) → (M,) fp32 log-probs of `labels` under logits = head(hidden)."""
    logits = head(hidden).float()  # (M, V)
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_logps_from_hidden(
    head: nn.Module, hidden: Tensor, labels: Tensor, *, chunk_size: int = 1024, recompute: bool = False
) -> Tensor:
    """Per-token log-probs (M,) fp32 of `labels` (M,) long given the predicting hidden rows `hidden` (M, H).

    Applies `head` to `chunk_size` rows at a time. With `recompute=True` (and grad enabled) each chunk is
    activation-checkpointed: the (chunk, V) logits are not kept for the backward but recomputed, so the
    memory held until backward is O(M·H) instead of O(M·V), for one extra head matmul.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    weight = getattr(head, "weight", None)
    if isinstance(weight, Tensor) and weight.is_floating_point() and hidden.dtype != weight.dtype:
        hidden = hidden.to(weight.dtype)
    use_ckpt = recompute and torch.is_grad_enabled()
    parts = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, y = hidden[start : start + chunk_size], labels[start : start + chunk_size]
        if use_ckpt:
            parts.append(checkpoint(_chunk_logps, head, h, y, use_reentrant=False))
        else:
            parts.append(_chunk_logps(head, h, y))
    if not parts:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(parts)


def mean_logps(summed: Tensor, lengths: Tensor) -> Tensor:
    """Per-token mean log-prob (N,) = summed / lengths; 0 where a sequence has no response token."""
    return summed / lengths.to(summed.dtype).clamp(min=1)


# ------------------------------------------------------------------------------------ concatenated path


def sequence_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    chunk_size: int = 1024,
    recompute: bool = False,
) -> tuple[Tensor, Tensor]:
    """Summed response-token log-probs of N sequences under a causal LM, in one forward.

    Args:
        model: a transformers causal LM (optionally wrapped by PEFT / DDP) accepting `position_ids`,
            `output_hidden_states` and `logits_to_keep`.
        input_ids: (N, T) long, any padding side (left, right, or mixed prompt lengths).
        attention_mask: (N, T), 1 on real tokens. Position ids are derived from it (cumsum − 1, clamped at 0).
        completion_mask: (N, T), 1 on response tokens; must be 0 at t = 0 (nothing predicts it) and on padding.
            The token at t is scored by the logits at t − 1.
        chunk_size: rows of hidden states sent through the output embedding at once.
        recompute: checkpoint each chunk (see `token_logps_from_hidden`); same values and gradients.

    Returns:
        summed: (N,) fp32, Σ of the response tokens' log-probs, differentiable w.r.t. the model; 0 for a
            row without response tokens.
        lengths: (N,) fp32 response token counts (exact integers as floats).
    """
    target = response_targets(input_ids, attention_mask, completion_mask)
    attention_mask = attention_mask.to(input_ids.device)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    return response_logps_from_hidden(model, final_hidden(out), input_ids, target, chunk_size=chunk_size,
                                      recompute=recompute)


def response_targets(input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> Tensor:
    """The response positions (N, T) bool of `sequence_logps`'s inputs, checked (ValueError on bad masks)."""
    _check_masks(input_ids, attention_mask, completion_mask)
    attention_mask = attention_mask.to(input_ids.device)
    target = completion_mask.to(input_ids.device).bool()
    if bool(target[:, 0].any()):
        raise ValueError("completion_mask must be 0 at position 0: no logits predict the first token")
    if bool((target & ~attention_mask.bool()).any()):
        raise ValueError("completion_mask marks a padding position (attention_mask = 0)")
    return target


def response_logps_from_hidden(model: nn.Module, hidden: Tensor, input_ids: Tensor, target: Tensor, *,
                               chunk_size: int = 1024, recompute: bool = False) -> tuple[Tensor, Tensor]:
    """(summed, lengths) of `sequence_logps` from the decoder's final (post-norm) hidden states (N, T, H) over
    `input_ids`, the response positions `target` (`response_targets`)."""
    # Response token at (n, t) is predicted by the hidden row (n, t - 1).
    rows, cols = target[:, 1:].nonzero(as_tuple=True)  # cols = t - 1
    token_lp = token_logps_from_hidden(
        output_head(model), hidden[rows, cols], input_ids[rows, cols + 1], chunk_size=chunk_size, recompute=recompute
    )  # (M,)
    n = input_ids.shape[0]
    summed = torch.zeros(n, dtype=torch.float32, device=hidden.device).index_add(0, rows, token_lp)
    lengths = target.sum(-1).to(torch.float32)
    return summed, lengths


def split_pairs(summed: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    b = summed.shape[0] // 2
    return {
        "chosen_logps": summed[:b],
        "rejected_logps": summed[b:],
        "chosen_lengths": lengths[:b],
        "rejected_lengths": lengths[b:],
    }


def batch_logps(model: nn.Module, batch: dict, *, chunk_size: int = 1024, recompute: bool = False) -> dict[str, Tensor]:
    """Chosen/rejected log-probs of a collated batch (docs/internals.md) from ONE forward over its 2B rows.

    `batch["input_ids"]`, `["attention_mask"]`, `["completion_mask"]`: (2B, T), rows 0..B−1 prompt+chosen,
    rows B..2B−1 prompt+rejected. Returns `chosen_logps`, `rejected_logps` (B,) fp32 summed log-probs and
    `chosen_lengths`, `rejected_lengths` (B,) fp32 token counts.
    """
    input_ids = batch["input_ids"]
    if input_ids.shape[0] % 2:
        raise ValueError(f"batch input_ids must have an even number of rows (2B), got {input_ids.shape[0]}")
    summed, lengths = sequence_logps(
        model,
        input_ids,
        batch["attention_mask"],
        batch["completion_mask"],
        chunk_size=chunk_size,
        recompute=recompute,
    )
    return split_pairs(summed, lengths)


# ----------------------------------------------------------------------------------- shared-prompt path


def cache_argument(model: nn.Module) -> str:
    """Name of the KV-cache argument: `cache` in recent transformers 5, `past_key_values` before."""
    params = inspect.signature(unwrap_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _pad_right(ids: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    extra = length - ids.shape[1]
    if extra == 0:
        return ids, mask
    return (
        torch.cat([ids, ids.new_zeros(ids.shape[0], extra)], 1),
        torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], 1),
    )


def batch_logps_shared_prompt(
    model: nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    chosen_ids: Tensor,
    chosen_mask: Tensor,
    rejected_ids: Tensor,
    rejected_mask: Tensor,
    *,
    chunk_size: int = 1024,
    recompute: bool = False,
) -> dict[str, Tensor]:
    """Chosen/rejected log-probs with the prompt run once and its KV cache shared by both completions.

    Two forwards: the B prompts with `use_cache=True`; then the cache is duplicated to 2B rows
    (`Cache.batch_select_indices`, rows [0..B−1, 0..B−1], differentiable) and the 2B completions (chosen rows
    then rejected rows) run on top of it, with position ids continuing each prompt and an attention mask
    covering prompt + completion. Gradients flow through the prompt's keys/values. Results equal
    `batch_logps` on the concatenated sequences (up to float rounding).

    Args:
        prompt_ids, prompt_mask: (B, P); any padding side (left padding is the natural one); each prompt
            needs at least one real token — its last hidden row predicts the first completion token.
        chosen_ids, chosen_mask: (B, C1) right-padded; every real completion token is a response token.
        rejected_ids, rejected_mask: (B, C2) right-padded.

    Returns the dict of `batch_logps`: `chosen_logps`, `rejected_logps` (B,) fp32 summed log-probs,
    `chosen_lengths`, `rejected_lengths` (B,) fp32 token counts.

    Under activation checkpointing use `isdaa.modeling.checkpointing.enable_layer_checkpointing` (the cache
    is kept, the prompt still runs once); transformers' own gradient checkpointing drops the cache in training
    (raises ValueError here). Not for sliding-window caches shorter than prompt + completion.
    """
    b = _check_shared_inputs(model, prompt_ids, prompt_mask, chosen_ids, chosen_mask, rejected_ids, rejected_mask)
    device = prompt_ids.device
    prompt_mask = prompt_mask.to(device)
    if not bool(prompt_mask.bool().any(-1).all()):
        raise ValueError("every prompt needs at least one real token")
    comp_ids, comp_mask = _stacked_completions(chosen_ids, chosen_mask, rejected_ids, rejected_mask, device)

    h_last, cache, cache_kw = _prompt_forward(model, prompt_ids, prompt_mask)
    cache.batch_select_indices(torch.arange(b, device=device).repeat(2))  # the cache for chosen, then rejected rows
    hidden_c = completion_forward(model, comp_ids, comp_mask, prompt_mask.repeat(2, 1), cache, cache_kw)  # 2B rows

    # Completion token j is predicted by the prompt's last row (j = 0) or the completion row j − 1.
    predicting = torch.cat([h_last.repeat(2, 1).unsqueeze(1), hidden_c[:, :-1]], 1)  # (2B, C, H)
    rows, cols = comp_mask.bool().nonzero(as_tuple=True)
    token_lp = token_logps_from_hidden(
        output_head(model), predicting[rows, cols], comp_ids[rows, cols], chunk_size=chunk_size, recompute=recompute
    )
    summed = torch.zeros(2 * b, dtype=torch.float32, device=device).index_add(0, rows, token_lp)
    return split_pairs(summed, comp_mask.sum(-1).to(torch.float32))


def _check_shared_inputs(model, prompt_ids, prompt_mask, chosen_ids, chosen_mask, rejected_ids, rejected_mask) -> int:
    """The batch size B, after the shape checks (and the refusal of gradient checkpointing in training)."""
    _check_masks(prompt_ids, prompt_mask)
    _check_masks(chosen_ids, chosen_mask)
    _check_masks(rejected_ids, rejected_mask)
    b = prompt_ids.shape[0]
    if chosen_ids.shape[0] != b or rejected_ids.shape[0] != b:
        raise ValueError("prompt, chosen and rejected must have the same number of rows B")
    hf = unwrap_model(model)
    checkpointed = any(getattr(mod, "gradient_checkpointing", False) is True for mod in hf.modules())
    if checkpointed and hf.training and torch.is_grad_enabled():
        raise ValueError(
            "batch_logps_shared_prompt does not work with transformers' gradient checkpointing (it drops the KV "
            "cache); use isdaa.modeling.checkpointing.enable_layer_checkpointing, or batch_logps"
        )
    return b


def _stacked_completions(chosen_ids, chosen_mask, rejected_ids, rejected_mask, device) -> tuple[Tensor, Tensor]:
    """(2B, C) ids and long mask: the chosen rows then the rejected rows, right-padded to one width C."""
    c = max(chosen_ids.shape[1], rejected_ids.shape[1])
    ch_ids, ch_mask = _pad_right(chosen_ids.to(device), chosen_mask.to(device), c)
    rj_ids, rj_mask = _pad_right(rejected_ids.to(device), rejected_mask.to(device), c)
    comp_ids = torch.cat([ch_ids, rj_ids])
    comp_mask = torch.cat([ch_mask, rj_mask]).long()
    if c > 1 and bool((comp_mask[:, 1:] > comp_mask[:, :-1]).any()):
        raise ValueError("completion masks must be right-padded (ones, then zeros)")
    return comp_ids, comp_mask


def _prompt_forward(model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor):
    """Run the B prompts once with `use_cache=True`: (hidden row of each prompt's last real token (B, H), which
    predicts completion token 0; the KV cache; the name of the model's cache argument)."""
    cache_kw = cache_argument(model)
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    hidden = final_hidden(out)  # (B, P, H)
    cache = getattr(out, cache_kw, None)
    if cache is None:
        raise ValueError("the model returned no KV cache for use_cache=True")
    last = prompt_mask.shape[1] - 1 - prompt_mask.long().flip(-1).argmax(-1)  # (B,) index of last real token
    return hidden[torch.arange(prompt_ids.shape[0], device=prompt_ids.device), last], cache, cache_kw


def completion_forward(
    model: nn.Module, comp_ids: Tensor, comp_mask: Tensor, prompt_mask: Tensor, cache, cache_kw: str
) -> Tensor:
    """Final hidden states (N, C, H) of N right-padded completions run on top of a KV cache holding their prompts
    (row n's prompt mask `prompt_mask[n]`, left-padded), with position ids continuing each prompt and an
    attention mask over prompt + completion. The cache is extended in place."""
    out = model(
        input_ids=comp_ids,
        attention_mask=torch.cat([prompt_mask.long(), comp_mask.long()], 1),  # (N, P + C)
        position_ids=prompt_mask.long().sum(-1, keepdim=True) + torch.arange(comp_ids.shape[1], device=comp_ids.device),
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=1,
        **{cache_kw: cache},
    )
    return final_hidden(out)
